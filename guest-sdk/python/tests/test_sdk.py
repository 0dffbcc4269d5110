"""Native tests of portcullis_guest: `scripts/build-python-policies.sh --test`, or
`python3 -m unittest discover -s guest-sdk/python/tests` with guest-sdk/python and the
bindings (target/python-bindings) on PYTHONPATH."""

import unittest
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional

from portcullis_guest import (
    U8,
    U32,
    Metadata,
    Policy,
    SettingsError,
    acting_for,
    allow,
    as_outcome,
    check_settings,
    claim,
    clock,
    data,
    deny,
    export_policy,
    fixed_length,
    has_scope,
    header,
    header_values,
    host,
    is_agent,
    is_method,
    json_body,
    json_pointer,
    json_pointer_all,
    keep_email_domain,
    keep_last,
    kind_name,
    log,
    parse,
    pseudonym,
    query,
    rate_limit,
    redact,
    require_approval,
    settings_failure,
    types,
)
from portcullis_guest import testing
from portcullis_guest.testing import agent, body, request, response, user


class MessageTest(unittest.TestCase):
    def test_headers_are_case_insensitive_query_is_not(self):
        req = request(
            "GET", "/a", headers=[("X-Api-Key", "k1"), ("x-api-key", "k2")], query=[("Token", "t")]
        )
        self.assertEqual(header(req, "x-API-key"), "k1")
        self.assertEqual(list(header_values(req, "X-API-KEY")), ["k1", "k2"])
        self.assertIsNone(header(req, "missing"))
        self.assertEqual(query(req, "Token"), "t")
        self.assertIsNone(query(req, "token"))

    def test_query_string_in_the_path_is_split(self):
        req = request("GET", "/a?page=2&flag&x=1")
        self.assertEqual(req.path, "/a")
        self.assertEqual(req.query, [("page", "2"), ("flag", ""), ("x", "1")])

    def test_principal_checks(self):
        req = request("GET", "/", principal=agent("bot", scopes=["a:read"], on_behalf_of="alice", claims=[("tenant", "acme")]))
        self.assertTrue(is_agent(req) and is_agent(req.principal))
        self.assertTrue(has_scope(req, "a:read") and not has_scope(req, "a:write"))
        self.assertEqual(acting_for(req), "alice")
        self.assertEqual(claim(req, "tenant"), "acme")
        self.assertEqual(kind_name(req.principal.kind), "agent")
        self.assertIsNone(acting_for(user("u", on_behalf_of="")))
        self.assertTrue(is_method(req, "get") and not is_method(req, "post"))

    def test_host_strips_port_userinfo_and_brackets(self):
        for authority, expected in [
            ("API.Example.com:8443", "api.example.com"),
            ("example.com", "example.com"),
            ("[::1]:8080", "::1"),
            ("[::1]", "::1"),
            ("user@host:1", "host"),
            ("host:", "host"),
            ("host:ab", "host:ab"),
        ]:
            self.assertEqual(host(request("GET", "/", authority=authority)), expected)

    def test_json_body_by_content_type_or_sniffing(self):
        req = request("POST", "/", body=body("application/vnd.x+json", b'{"a":{"b":[1,2]}}'))
        self.assertEqual(json_pointer(req, "/a/b/1"), 2)
        sniffed = request("POST", "/", body=body("text/plain", b"  [1]"))
        self.assertEqual(json_body(sniffed), [1])
        html = request("POST", "/", body=body("text/html", b"<p>{}</p>"))
        self.assertIsNone(json_body(html))
        self.assertIsNone(json_body(request("POST", "/", json='{"a":')))
        self.assertIsNone(json_body(request("POST", "/", json="[NaN]")))
        self.assertIsNone(json_body(request("POST", "/", body=body("application/json", b'"\xff"'))))
        self.assertIsNone(json_body(request("GET", "/")))

    def test_json_pointer_with_wildcards(self):
        doc = {
            "customers": [
                {"email": "a@x", "phone": "1"},
                {"email": "b@x"},
                {"email": None},
            ],
            "m~n": {"a/b": 5},
            "map": {"0": "zero", "k": "v"},
        }
        self.assertEqual(json_pointer_all(doc, "/customers/*/email"), ["a@x", "b@x", None])
        self.assertEqual(json_pointer_all(doc, "/customers/*/phone"), ["1"])
        self.assertEqual(json_pointer_all(doc, "/map/*"), ["zero", "v"])
        self.assertEqual(json_pointer(doc, "/m~0n/a~1b"), 5)
        self.assertEqual(json_pointer(doc, "/map/0"), "zero")
        self.assertEqual(json_pointer(doc, "/customers/1/email"), "b@x")
        self.assertEqual(json_pointer_all(doc, "/customers/01/email"), [])
        self.assertEqual(json_pointer_all(doc, "/customers/-"), [])
        self.assertEqual(json_pointer_all(doc, "/nothing/*"), [])
        self.assertEqual(json_pointer_all(doc, ""), [doc])
        with self.assertRaises(ValueError):
            json_pointer(doc, "customers")
        with self.assertRaises(ValueError):
            json_pointer(doc, "/a~2")
        resp = response(200, json={"items": [{"id": 1}, {"id": 2}]})
        self.assertEqual(json_pointer_all(resp, "/items/*/id"), [1, 2])


class DecisionTest(unittest.TestCase):
    def test_deny_carries_status_code_reason_and_labels(self):
        out = deny(403, "missing-scope", "scope a is required").label("rule", "r1")
        self.assertEqual((out.denial().status, out.denial().code), (403, "missing-scope"))
        self.assertEqual(out.label_value("rule"), "r1")
        self.assertFalse(out.is_allow())
        self.assertEqual(out.kind(), "deny")
        with self.assertRaises(ValueError):
            deny(70000, "x", "y")

    def test_names_masks_and_detectors(self):
        out = (
            redact().json_name("card_number", keep_last(4)).json_name("cvc")
            .detected("email", keep_email_domain()).detected("jwt")
            .mask(types.Target_Header("x-customer"), pseudonym()).mask(types.Target_Query("q"), fixed_length(3))
            .build()
        )
        self.assertEqual(
            out.redactions(),
            [
                types.Redaction(types.Target_JsonName("card_number"), types.Action_Mask(types.Mask_KeepLast(4))),
                types.Redaction(types.Target_JsonName("cvc"), types.Action_Remove()),
                types.Redaction(types.Target_Detected("email"), types.Action_Mask(types.Mask_KeepEmailDomain())),
                types.Redaction(types.Target_Detected("jwt"), types.Action_Remove()),
                types.Redaction(types.Target_Header("x-customer"), types.Action_Mask(types.Mask_Pseudonym())),
                types.Redaction(types.Target_Query("q"), types.Action_Mask(types.Mask_FixedLength(3))),
            ],
        )
        with self.assertRaises(ValueError):
            keep_last(-1)

    def test_redact_collects_targets_in_order(self):
        out = (
            redact().json("/email").json_mask("/phone", "***").header("x-api-key").query("token")
            .header_mask("h", "m").query_mask("q", "m").label("fields", "6").build()
        )
        self.assertEqual(
            out.redactions(),
            [
                types.Redaction(types.Target_JsonPointer("/email"), types.Action_Remove()),
                types.Redaction(types.Target_JsonPointer("/phone"), types.Action_Replace("***")),
                types.Redaction(types.Target_Header("x-api-key"), types.Action_Remove()),
                types.Redaction(types.Target_Query("token"), types.Action_Remove()),
                types.Redaction(types.Target_Header("h"), types.Action_Replace("m")),
                types.Redaction(types.Target_Query("q"), types.Action_Replace("m")),
            ],
        )
        self.assertEqual(out.label_value("fields"), "6")

    def test_empty_redaction_is_an_allow_with_its_labels(self):
        out = as_outcome(redact().label("k", "v"))
        self.assertTrue(out.is_allow())
        self.assertEqual(out.label_value("k"), "v")

    def test_approval_defaults_and_ttl(self):
        self.assertEqual(as_outcome(require_approval("why", "finance")).approval().ttl_seconds, 900)
        out = as_outcome(require_approval("why", "finance").ttl(3600).label("a", "b"))
        self.assertEqual((out.approval().approver_group, out.approval().ttl_seconds), ("finance", 3600))
        self.assertEqual(out.label_value("a"), "b")
        self.assertEqual(out.kind(), "require-approval")

    def test_to_wit_and_back(self):
        out = allow().label("rule", "x")
        wit = out.to_wit()
        self.assertIsInstance(wit, types.Outcome)
        self.assertEqual(as_outcome(wit), out)
        with self.assertRaises(TypeError):
            as_outcome(None)


@dataclass
class Rule:
    path: str
    mode: Literal["allow", "deny"] = "allow"


@dataclass
class Nested:
    group: str
    limit: U32 = 0
    small: U8 = 1
    ratio: float = 0.5
    rules: List[Rule] = field(default_factory=list)
    extra: Dict[str, int] = field(default_factory=dict)
    note: Optional[str] = None
    anything: Any = None


class SettingsTest(unittest.TestCase):
    def error(self, text, cls=Nested):
        with self.assertRaises(SettingsError) as caught:
            parse(text, cls)
        return caught.exception

    def test_valid_document_parses(self):
        s = parse('{"group": "g", "rules": [{"path": "/a", "mode": "deny"}], "ratio": 1, "extra": {"a": 1}}', Nested)
        self.assertEqual(s.rules[0], Rule("/a", "deny"))
        self.assertEqual(s.ratio, 1.0)
        self.assertIsNone(s.note)

    def test_blank_and_null_documents_yield_the_default(self):
        self.assertEqual(parse("  ", Nested), Nested(group=""))
        self.assertEqual(parse("null", Nested), Nested(group=""))

    def test_no_settings_accepts_only_an_empty_document(self):
        for text in ["{}", "{ }", "", "null"]:
            self.assertIsNone(parse(text, None))
        self.assertEqual(self.error('{"x": 1}', None).setting, "")

    def test_missing_and_unknown_fields_are_named(self):
        e = self.error('{"limit": 3}')
        self.assertEqual((e.setting, e.message), ("group", "missing field `group`"))
        e = self.error('{"group": "g", "limitt": 3}')
        self.assertEqual(e.setting, "limitt")
        self.assertTrue(e.message.startswith("unknown field `limitt`, expected one of `group`, `limit`"), e.message)

    def test_wrong_types_name_the_field(self):
        cases = [
            ('{"group": "g", "limit": "ten"}', "limit", 'invalid type: string "ten", expected u32'),
            ('{"group": "g", "limit": true}', "limit", "invalid type: boolean `true`, expected u32"),
            ('{"group": "g", "limit": 1.5}', "limit", "invalid type: floating point `1.5`, expected u32"),
            ('{"group": "g", "limit": -1}', "limit", "invalid value: integer `-1`, expected u32"),
            ('{"group": "g", "small": 256}', "small", "invalid value: integer `256`, expected u8"),
            ('{"group": ["g"]}', "group", "invalid type: sequence, expected a string"),
            ('{"group": null}', "group", "invalid type: null, expected a string"),
            ('{"group": "g", "rules": {"path": "/"}}', "rules", "invalid type: map, expected a sequence"),
            ('{"group": "g", "ratio": "x"}', "ratio", 'invalid type: string "x", expected f64'),
            ('{"group": "g", "extra": {"a": "1"}}', "extra.a", 'invalid type: string "1", expected i64'),
        ]
        for text, setting, message in cases:
            with self.subTest(text=text):
                e = self.error(text)
                self.assertEqual((e.setting, e.message), (setting, message))

    def test_nested_errors_name_the_array_element(self):
        e = self.error('{"group": "g", "rules": [{"path": "/a"}, {"path": "/b", "mode": "maybe"}]}')
        self.assertEqual((e.setting, e.message), ("rules[1].mode", "unknown variant `maybe`, expected `allow` or `deny`"))
        self.assertEqual(self.error('{"group": "g", "rules": [{"path": "/a"}, {"mode": "deny"}]}').setting, "rules[1].path")
        self.assertEqual(self.error('{"group": "g", "rules": [{"path": "/a", "extra": 1}]}').setting, "rules[0].extra")

    def test_duplicates_and_syntax_errors(self):
        e = self.error('{"group": "g", "group": "h"}')
        self.assertEqual((e.setting, e.message), ("group", "duplicate field `group`"))
        e = self.error('{"group": "g",, }')
        self.assertEqual(e.setting, "")
        self.assertIn("line 1", e.message)
        self.assertEqual(self.error('{"group": "g", "ratio": NaN}').setting, "")
        self.assertEqual(self.error("[1]").message, "invalid type: sequence, expected struct Nested")

    def test_settings_failure_is_a_500_deny(self):
        out = settings_failure(SettingsError("limit", "bad"))
        self.assertEqual((out.denial().status, out.denial().code), (500, "policy-settings"))
        self.assertEqual(out.denial().reason, "the policy's setting limit is invalid: bad")


class Echo(Policy):
    @dataclass
    class Settings:
        greeting: str = "hi"

    def metadata(self):
        return Metadata("echo", "1.2.3").both_phases().needs_request_body()

    def validate(self, settings):
        if settings.greeting == "bad":
            raise SettingsError("greeting", "must not be bad")

    def on_request(self, settings, req):
        return allow().label("greeting", settings.greeting)

    def on_response(self, settings, req, resp):
        return redact().header("x-secret")


class ExportTest(unittest.TestCase):
    def setUp(self):
        import wit_world.imports.settings as settings_import

        self.settings_import = settings_import
        self.saved = settings_import.get
        self.addCleanup(setattr, settings_import, "get", self.saved)

    def test_handler_exports_the_policy(self):
        from componentize_py_types import Err

        Handler = export_policy(Echo)
        handler = Handler()
        meta = handler.metadata()
        self.assertEqual((meta.name, meta.version, meta.needs_request_body), ("echo", "1.2.3", True))
        self.assertEqual(meta.phases, types.Phases.REQUEST | types.Phases.RESPONSE)
        handler.init("{}")
        with self.assertRaises(Err) as caught:
            handler.init('{"greeting": "bad"}')
        self.assertEqual(caught.exception.value, types.SettingsError("greeting", "must not be bad"))
        with self.assertRaises(Err) as caught:
            handler.init('{"greting": "x"}')
        self.assertEqual(caught.exception.value.setting, "greting")

        self.settings_import.get = lambda: '{"greeting": "hello"}'
        out = handler.on_request(request("GET", "/"))
        self.assertEqual(out, types.Outcome(types.Decision_Allow(), [("greeting", "hello")]))
        out = handler.on_response(request("GET", "/"), response(200))
        self.assertEqual(out.decision, types.Decision_Redact([types.Redaction(types.Target_Header("x-secret"), types.Action_Remove())]))

        self.settings_import.get = lambda: '{"greeting": 3}'
        out = handler.on_request(request("GET", "/"))
        self.assertEqual(out.decision.value.code, "policy-settings")

    def test_settings_are_parsed_once_per_instance_and_again_when_they_change(self):
        seen = []

        class Keep(Echo):
            def on_request(self, settings, req):
                seen.append(settings)
                return allow()

        handler = export_policy(Keep)()
        self.settings_import.get = lambda: '{"greeting": "a"}'
        handler.on_request(request("GET", "/x"))
        handler.on_request(request("GET", "/y"))
        self.settings_import.get = lambda: '{"greeting": "b"}'
        handler.on_request(request("GET", "/z"))
        self.assertIs(seen[0], seen[1], "the same text was parsed twice")
        self.assertEqual([seen[1].greeting, seen[2].greeting], ["a", "b"])


class CapabilitiesTest(unittest.TestCase):
    def setUp(self):
        testing.reset()

    def test_rate_limit_counts_within_a_window_and_resets_after_it(self):
        testing.set_now_ms(10_500)
        takes = [rate_limit.take("k", 2, 1_000) for _ in range(3)]
        self.assertEqual([t.allowed for t in takes], [True, True, False])
        self.assertEqual(takes[0].remaining, 1)
        self.assertEqual(takes[2].reset_after_ms, 500)
        self.assertTrue(rate_limit.take("other", 2, 1_000).allowed)
        testing.set_now_ms(11_000)
        self.assertTrue(rate_limit.take("k", 2, 1_000).allowed)

    def test_data_logs_and_clock(self):
        testing.insert_data("vip", "alice", "gold")
        self.assertTrue(data.contains("vip", "alice"))
        self.assertEqual(data.get("vip", "alice"), "gold")
        self.assertFalse(data.contains("vip", "bob") or data.contains("none", "alice"))
        log.info("hello")
        self.assertEqual(testing.logs(), [("info", "hello")])
        with self.assertRaises(ValueError):
            log.write("loud", "x")
        self.assertGreater(clock.now_ms(), 1_600_000_000_000)
        testing.reset()
        self.assertEqual(testing.logs(), [])


class ExceptionReportTest(unittest.TestCase):
    def test_describes_the_exception_and_where_it_was_raised(self):
        from portcullis_guest._host import describe_exception

        def inner():
            raise KeyError("x")

        try:
            inner()
        except KeyError as error:
            text = describe_exception(error)
        self.assertTrue(text.startswith("KeyError: 'x' (at test_sdk.py:"), text)
        self.assertIn(" in inner <- test_sdk.py:", text)


if __name__ == "__main__":
    unittest.main()
