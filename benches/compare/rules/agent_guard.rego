# agent-guard in Rego: the same rule as policies/rust/agent-guard, returning the whole
# outcome (decision, reason, labels) so it can be compared field by field.
# data.settings holds the policy's settings: approver_group, ttl_seconds,
# deny_without_on_behalf_of.
package agent_guard

import rego.v1

method := upper(input.method)

has_user if {
	is_string(input.principal.on_behalf_of)
	input.principal.on_behalf_of != ""
}

user := input.principal.on_behalf_of if has_user

else := "no user"

outcome := {"decision": "allow", "rule": "not-an-agent"} if {
	input.principal.kind != "agent"
} else := {
	"decision": "deny",
	"status": 403,
	"code": "agent-without-user",
	"reason": sprintf("agent %s must act on behalf of a user", [input.principal.id]),
	"rule": "agent-without-user",
} if {
	not has_user
	data.settings.deny_without_on_behalf_of
} else := {"decision": "allow", "rule": "agent-read-only"} if {
	method in {"GET", "HEAD", "OPTIONS"}
} else := {
	"decision": "deny",
	"status": 403,
	"code": "agent-delete-forbidden",
	"reason": sprintf("agents may not delete: DELETE %s", [input.path]),
	"rule": "agent-delete-forbidden",
} if {
	method == "DELETE"
} else := {
	"decision": "require-approval",
	"reason": sprintf("agent %s acting for %s wants to %s %s", [input.principal.id, user, method, input.path]),
	"approver_group": data.settings.approver_group,
	"ttl_seconds": data.settings.ttl_seconds,
	"rule": "agent-write-needs-approval",
}
