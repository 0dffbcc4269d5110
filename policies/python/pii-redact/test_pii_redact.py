"""Native unit tests of pii-redact: `scripts/build-python-policies.sh --test`, or
`python3 -m unittest` here with the SDK and the bindings on PYTHONPATH."""

import unittest

from portcullis_guest import SettingsError, as_outcome, check_settings, types
from portcullis_guest.testing import request, response

from pii_redact import PiiRedact


def settings(json):
    return check_settings(PiiRedact, json)


def pointers(out):
    result = []
    for r in as_outcome(out).redactions():
        target, action = r.target, r.action
        if isinstance(target, types.Target_JsonPointer):
            mask = action.value if isinstance(action, types.Action_Replace) else None
            result.append((target.value, mask))
        elif isinstance(target, types.Target_Header):
            result.append((f"header:{target.value}", None))
        else:
            result.append((f"query:{target.value}", None))
    return result


class PiiRedactTest(unittest.TestCase):
    def test_metadata_takes_both_phases_without_bodies(self):
        m = PiiRedact().metadata().build()
        self.assertEqual(m.phases, types.Phases.REQUEST | types.Phases.RESPONSE)
        self.assertFalse(m.needs_request_body or m.needs_response_body)

    def test_response_fields_are_removed_and_headers_stripped(self):
        s = settings('{"fields": ["/email", "/customers/*/phone"], "headers": ["X-User-Email"]}')
        out = as_outcome(PiiRedact().on_response(s, request("GET", "/c"), response(200)))
        self.assertEqual(
            pointers(out),
            [("/email", None), ("/customers/*/phone", None), ("header:X-User-Email", None)],
        )
        self.assertEqual(out.label_value("rule"), "response")

    def test_mask_replaces_instead_of_removing(self):
        s = settings('{"fields": ["/email"], "mask": "***"}')
        out = PiiRedact().on_response(s, request("GET", "/c"), response(200))
        self.assertEqual(pointers(out), [("/email", "***")])

    def test_requests_to_third_parties_are_redacted_others_pass(self):
        s = settings('{"fields": ["/email"], "third_party_hosts": ["crm.partner.io", "*.analytics.example"]}')
        for authority in ["crm.partner.io", "CRM.Partner.io:8443", "eu.analytics.example"]:
            out = as_outcome(PiiRedact().on_request(s, request("POST", "/x", authority=authority)))
            self.assertEqual(pointers(out), [("/email", None)], authority)
            self.assertEqual(out.label_value("rule"), "third-party-request")
            self.assertEqual(out.label_value("host"), authority.split(":")[0].lower())
        for authority in ["api.example.com", "analytics.example", "evilcrm.partner.io", "xanalytics.example"]:
            out = as_outcome(PiiRedact().on_request(s, request("POST", "/x", authority=authority)))
            self.assertTrue(out.is_allow(), authority)
            self.assertEqual(out.labels, [], authority)

    def test_star_covers_every_host(self):
        s = settings('{"fields": ["/email"], "third_party_hosts": ["*"]}')
        out = PiiRedact().on_request(s, request("POST", "/", authority="x.test"))
        self.assertEqual(pointers(out), [("/email", None)])

    def test_headers_only_settings_allow_requests_to_third_parties_unchanged(self):
        s = settings('{"headers": ["x-email"], "third_party_hosts": ["p.io"]}')
        out = as_outcome(PiiRedact().on_request(s, request("POST", "/", authority="p.io")))
        self.assertTrue(out.is_allow())
        # The labels stay, as in the Rust policy.
        self.assertEqual(out.labels, [("rule", "third-party-request"), ("host", "p.io")])

    def test_bad_settings_name_the_setting(self):
        for json, setting in [
            ("{}", "fields"),
            ('{"fields": ["/ok", "email"]}', "fields[1]"),
            ('{"fields": ["/a~2b"]}', "fields[0]"),
            ('{"fields": ["/a~"]}', "fields[0]"),
            ('{"fields": ["/a"], "third_party_hosts": ["https://x.io"]}', "third_party_hosts[0]"),
            ('{"fields": ["/a"], "third_party_hosts": ["*."]}', "third_party_hosts[0]"),
            ('{"fields": ["/a"], "headers": [""]}', "headers[0]"),
            ('{"fields": ["/a"], "mask": 3}', "mask"),
            ('{"fields": ["/a", 7]}', "fields[1]"),
            ('{"field": ["/a"]}', "field"),
        ]:
            with self.subTest(json=json), self.assertRaises(SettingsError) as caught:
                settings(json)
            self.assertEqual(caught.exception.setting, setting)

    def test_null_mask_means_remove(self):
        s = settings('{"fields": ["/email"], "mask": null}')
        self.assertEqual(pointers(PiiRedact().on_response(s, request("GET", "/"), response(200))), [("/email", None)])


if __name__ == "__main__":
    unittest.main()
