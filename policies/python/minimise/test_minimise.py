"""Native unit tests of minimise: `scripts/build-python-policies.sh --test`, or
`python3 -m unittest` here with the SDK and the bindings on PYTHONPATH. The same cases as
the Rust original's tests."""

import unittest

from portcullis_guest import SettingsError, as_outcome, check_settings, types
from portcullis_guest.testing import agent, request, response, user

from minimise import Minimise, parse_mask


def settings(json):
    return check_settings(Minimise, json)


def action_text(action):
    if isinstance(action, types.Action_Remove):
        return "remove"
    if isinstance(action, types.Action_Replace):
        return f"replace:{action.value}"
    mask = action.value
    if isinstance(mask, types.Mask_KeepLast):
        return f"keep-last:{mask.value}"
    if isinstance(mask, types.Mask_KeepEmailDomain):
        return "email-domain"
    if isinstance(mask, types.Mask_FixedLength):
        return f"fixed:{mask.value}"
    return "pseudonym"


def shown(out):
    result = []
    for r in as_outcome(out).redactions():
        kind = "json-name" if isinstance(r.target, types.Target_JsonName) else "detected"
        result.append(f"{kind}:{r.target.value} {action_text(r.action)}")
    return result


def get(authority, path, principal=None):
    return request("GET", path, authority=authority, principal=principal)


def on_response(s, req):
    return as_outcome(Minimise().on_response(s, req, response(200)))


class MinimiseTest(unittest.TestCase):
    def test_metadata_takes_both_phases_without_bodies(self):
        m = Minimise().metadata().build()
        self.assertEqual(m.phases, types.Phases.REQUEST | types.Phases.RESPONSE)
        self.assertFalse(m.needs_request_body or m.needs_response_body)

    def test_the_payments_rule_masks_names_and_detections_in_responses_only(self):
        s = settings(
            '{"rules": [{"fields": ["card_number", "iban"], "detect": ["card-number"], "mask": "keep-last:4"}]}'
        )
        out = on_response(s, get("api.test", "/payments"))
        self.assertEqual(
            shown(out),
            ["json-name:card_number keep-last:4", "json-name:iban keep-last:4", "detected:card-number keep-last:4"],
        )
        self.assertEqual(out.label_value("rules"), "rules[0]")
        self.assertTrue(as_outcome(Minimise().on_request(s, get("api.test", "/payments"))).is_allow())

    def test_every_matching_rule_applies_in_order(self):
        s = settings(
            """{"first_party_hosts": ["api.test"], "rules": [
                {"name": "cards", "fields": ["card_number"], "mask": "keep-last:4", "direction": "both"},
                {"name": "agents", "detect": ["email"], "mask": "pseudonym", "principals": ["agent"]},
                {"name": "partners", "fields": ["card_number"], "mask": "fixed:8", "third_party": true},
                {"name": "notes", "fields": ["note"], "mask": "replace:[note]", "paths": ["/payments/**"]},
                {"name": "eu", "detect": ["iban"], "mask": "remove", "hosts": ["*.eu.test"], "direction": "request"}
            ]}"""
        )
        out = on_response(s, get("API.test:8443", "/payments/7", agent("bot")))
        self.assertEqual(
            shown(out),
            ["json-name:card_number keep-last:4", "detected:email pseudonym", "json-name:note replace:[note]"],
        )
        self.assertEqual(out.label_value("rules"), "cards,agents,notes")
        partner = get("pay.eu.test", "/refunds", user("alice"))
        out = on_response(s, partner)
        self.assertEqual(shown(out), ["json-name:card_number keep-last:4", "json-name:card_number fixed:8"])
        self.assertEqual(out.label_value("rules"), "cards,partners")
        out = as_outcome(Minimise().on_request(s, partner))
        self.assertEqual(shown(out), ["json-name:card_number keep-last:4", "detected:iban remove"])
        self.assertEqual(out.label_value("rules"), "cards,eu")

    def test_no_matching_rule_allows_without_labels(self):
        s = settings('{"rules": [{"detect": ["jwt"], "mask": "remove", "paths": ["/auth/*"]}]}')
        out = on_response(s, get("api.test", "/auth/a/b"))
        self.assertTrue(out.is_allow())
        self.assertEqual(out.labels, [])
        self.assertEqual(shown(on_response(s, get("api.test", "/auth/a"))), ["detected:jwt remove"])

    def test_defaults_come_first_and_are_stricter_for_agents_and_third_parties(self):
        s = settings(
            '{"defaults": true, "first_party_hosts": ["*.bank.test"], "rules": [{"fields": ["note"], "mask": "remove"}]}'
        )
        alice = get("api.bank.test", "/x", user("alice"))
        self.assertEqual(
            on_response(s, alice).label_value("rules"), "default-cards,default-iban,default-secrets,rules[0]"
        )
        self.assertTrue(as_outcome(Minimise().on_request(s, alice)).is_allow())
        out = on_response(s, get("api.bank.test", "/x", agent("bot")))
        self.assertEqual(
            out.label_value("rules"),
            "default-cards,default-iban,default-secrets,default-agent-email,default-agent-phone,rules[0]",
        )
        self.assertIn("detected:email email-domain", shown(out))
        self.assertIn("detected:phone fixed:8", shown(out))
        out = as_outcome(Minimise().on_request(s, get("crm.partner.test", "/x")))
        self.assertEqual(out.label_value("rules"), "default-third-party")
        self.assertEqual(
            shown(out),
            [
                "json-name:card_number fixed:8",
                "json-name:iban fixed:8",
                "detected:card-number fixed:8",
                "detected:iban fixed:8",
                "detected:email fixed:8",
                "detected:phone fixed:8",
            ],
        )

    def test_masks_parse(self):
        for text, expected in [
            ("keep-last:4", "keep-last:4"),
            ("keep-last:0", "keep-last:0"),
            ("email-domain", "email-domain"),
            ("fixed:256", "fixed:256"),
            ("pseudonym", "pseudonym"),
            ("remove", "remove"),
            ("replace:", "replace:"),
            ("replace:a:b", "replace:a:b"),
        ]:
            self.assertEqual(action_text(parse_mask(text)), expected, text)
        for text in ["keep-last:", "keep-last:-1", "keep-last:1001", "keep-last:+4", "fixed:0", "fixed:257", "hash", ""]:
            self.assertIsInstance(parse_mask(text), str, text)

    def test_bad_settings_name_the_setting(self):
        for json, setting in [
            ("{}", "rules"),
            ('{"rules": [{"mask": "remove"}]}', "rules[0]"),
            ('{"rules": [{"fields": ["a"]}]}', "rules[0].mask"),
            ('{"rules": [{"fields": ["a"], "mask": "keep-last:x"}]}', "rules[0].mask"),
            ('{"rules": [{"fields": ["a"], "mask": "remove"}, {"fields": [""], "mask": "remove"}]}', "rules[1].fields[0]"),
            ('{"rules": [{"detect": ["email", "ssn"], "mask": "remove"}]}', "rules[0].detect[1]"),
            ('{"rules": [{"detect": ["email"], "mask": "remove", "direction": "up"}]}', "rules[0].direction"),
            ('{"rules": [{"detect": ["email"], "mask": "remove", "hosts": ["https://x"]}]}', "rules[0].hosts[0]"),
            ('{"rules": [{"detect": ["email"], "mask": "remove", "paths": ["x/**"]}]}', "rules[0].paths[0]"),
            ('{"rules": [{"detect": ["email"], "mask": "remove", "principals": ["bot"]}]}', "rules[0].principals[0]"),
            ('{"rules": [{"detect": ["email"], "mask": "remove", "name": "a,b"}]}', "rules[0].name"),
            ('{"rules": [{"detect": ["email"], "mask": "remove", "third_party": true}]}', "first_party_hosts"),
            ('{"defaults": true}', "first_party_hosts"),
            ('{"defaults": true, "first_party_hosts": ["a b"]}', "first_party_hosts[0]"),
            ('{"rules": [{"detect": ["email"], "mask": "remove", "route": "x"}]}', "rules[0].route"),
            ('{"default": true}', "default"),
        ]:
            with self.assertRaises(SettingsError, msg=json) as caught:
                settings(json)
            self.assertEqual(caught.exception.setting, setting, json)


if __name__ == "__main__":
    unittest.main()
