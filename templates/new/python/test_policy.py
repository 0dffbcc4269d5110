"""Unit tests of `{{name}}`, run natively without building the component:

    portcullis build             # once: also writes the bindings to target/python-bindings
    python3 -m unittest          # here

`portcullis test tests/` then checks the built component against recorded traffic.
"""

import sys
import unittest
from pathlib import Path

# The guest SDK and the bindings `portcullis build` wrote into this project's target/.
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), "{{sdk}}/python", str(HERE / "target" / "python-bindings")]

from portcullis_guest import as_outcome, check_settings  # noqa: E402
from portcullis_guest.testing import agent, request, user  # noqa: E402

from {{module}} import {{type}}  # noqa: E402


def decide(req, json="{}"):
    return as_outcome({{type}}().on_request(check_settings({{type}}, json), req))


class {{type}}Test(unittest.TestCase):
    def test_agents_read(self):
        req = request("GET", "/notes/1", principal=agent("bot", on_behalf_of="alice"))
        self.assertEqual(decide(req).kind(), "allow")

    def test_agents_may_not_write(self):
        outcome = decide(request("DELETE", "/notes/1", principal=agent("bot", on_behalf_of="alice")))
        self.assertEqual(outcome.kind(), "deny")
        self.assertEqual(outcome.denial().code, "agent-read-only")

    def test_users_write(self):
        self.assertEqual(decide(request("POST", "/notes", principal=user("alice"))).kind(), "allow")

    def test_settings_widen_what_agents_may_do(self):
        req = request("POST", "/notes", principal=agent("bot", on_behalf_of="alice"))
        self.assertEqual(decide(req, '{"agent_methods": ["get", "post"]}').kind(), "allow")


if __name__ == "__main__":
    unittest.main()
