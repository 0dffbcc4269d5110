"""Native unit tests of agent-guard: `scripts/build-python-policies.sh --test`, or
`python3 -m unittest` here with the SDK and the bindings on PYTHONPATH."""

import unittest

from portcullis_guest import SettingsError, as_outcome, check_settings
from portcullis_guest.testing import agent, anonymous, request, service, user

from agent_guard import AgentGuard


def settings(json='{"approver_group": "ops"}'):
    return check_settings(AgentGuard, json)


def decide(req, s=None):
    return as_outcome(AgentGuard().on_request(s or settings(), req))


def agent_request(method):
    return request(method, "/invoices/7", principal=agent("copilot", on_behalf_of="alice"))


class SettingsTest(unittest.TestCase):
    def test_defaults(self):
        s = settings()
        self.assertEqual((s.ttl_seconds, s.deny_without_on_behalf_of), (900, True))

    def test_errors_name_the_setting(self):
        for json, setting in [
            ("{}", "approver_group"),
            ("", "approver_group"),
            ('{"approver_group": " "}', "approver_group"),
            ('{"approver_group": "ops", "ttl_seconds": 0}', "ttl_seconds"),
            ('{"approver_group": "ops", "ttl_seconds": -1}', "ttl_seconds"),
            ('{"approver_group": "ops", "ttl_seconds": 4294967296}', "ttl_seconds"),
            ('{"approver_group": "ops", "ttl_seconds": "60"}', "ttl_seconds"),
            ('{"approver_group": "ops", "deny_without_on_behalf_of": 1}', "deny_without_on_behalf_of"),
            ('{"approver_group": "ops", "approvers": "x"}', "approvers"),
        ]:
            with self.subTest(json=json), self.assertRaises(SettingsError) as caught:
                settings(json)
            self.assertEqual(caught.exception.setting, setting)

    def test_messages_follow_the_rust_sdk(self):
        with self.assertRaises(SettingsError) as caught:
            settings("{}")
        self.assertEqual(caught.exception.message, "missing field `approver_group`")
        with self.assertRaises(SettingsError) as caught:
            settings('{"approver_group": "ops", "approvers": "x"}')
        self.assertEqual(
            caught.exception.message,
            "unknown field `approvers`, expected one of `approver_group`, `ttl_seconds`, "
            "`deny_without_on_behalf_of`",
        )


class DecisionTest(unittest.TestCase):
    def test_agents_may_read(self):
        for method in ["GET", "HEAD", "OPTIONS", "get"]:
            out = decide(agent_request(method))
            self.assertTrue(out.is_allow(), method)
            self.assertEqual(out.label_value("rule"), "agent-read-only")

    def test_agent_writes_need_approval(self):
        for method in ["POST", "PUT", "PATCH", "CALL"]:
            out = decide(agent_request(method))
            approval = out.approval()
            self.assertIsNotNone(approval, method)
            self.assertEqual((approval.approver_group, approval.ttl_seconds), ("ops", 900))
            self.assertEqual(
                approval.reason, f"agent copilot acting for alice wants to {method} /invoices/7"
            )
            self.assertEqual(out.label_value("rule"), "agent-write-needs-approval")

    def test_agent_delete_is_denied(self):
        denial = decide(agent_request("DELETE")).denial()
        self.assertEqual((denial.status, denial.code), (403, "agent-delete-forbidden"))
        self.assertEqual(denial.reason, "agents may not delete: DELETE /invoices/7")

    def test_agent_without_user_is_denied_unless_allowed_by_settings(self):
        req = request("GET", "/", principal=agent("bot"))
        out = decide(req)
        self.assertEqual(out.denial().code, "agent-without-user")
        self.assertEqual(out.denial().reason, "agent bot must act on behalf of a user")
        # An empty on-behalf-of counts as none.
        self.assertEqual(decide(request("GET", "/", principal=agent("bot", on_behalf_of=""))).kind(), "deny")

        lenient = settings('{"approver_group": "ops", "deny_without_on_behalf_of": false}')
        self.assertTrue(decide(req, lenient).is_allow())
        approval = decide(request("POST", "/", principal=agent("bot")), lenient).approval()
        self.assertEqual(approval.reason, "agent bot acting for no user wants to POST /")

    def test_other_principals_pass(self):
        for principal in [user("alice"), service("crm"), anonymous()]:
            out = decide(request("DELETE", "/x", principal=principal))
            self.assertTrue(out.is_allow())
            self.assertEqual(out.label_value("rule"), "not-an-agent")

    def test_ttl_setting(self):
        s = settings('{"approver_group": "finance", "ttl_seconds": 60}')
        self.assertEqual(decide(agent_request("POST"), s).approval().ttl_seconds, 60)

    def test_metadata(self):
        m = AgentGuard().metadata().build()
        self.assertEqual((m.name, m.needs_request_body, m.needs_response_body), ("agent-guard", False, False))


if __name__ == "__main__":
    unittest.main()
