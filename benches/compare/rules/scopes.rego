# scopes in Rego: the same rule as policies/rust/scopes, returning the whole outcome.
# data.rules holds the settings' rules, prepared once at load (src/rego.rs): methods
# upper-cased, each path glob split into the segments before and after its `**` (Rego has
# no recursion, so a glob may hold at most one `**`). data.default is "allow" or "deny".
package scopes

import rego.v1

method := upper(input.method)

path := [s | some s in split(input.path, "/"); s != ""]

segment_ok(g, _) if g == "*"

segment_ok(g, s) if g == s

glob_ok(rule) if {
	not rule.double
	count(path) == count(rule.prefix)
	every i, g in rule.prefix {
		segment_ok(g, path[i])
	}
}

glob_ok(rule) if {
	rule.double
	count(path) >= count(rule.prefix) + count(rule.suffix)
	every i, g in rule.prefix {
		segment_ok(g, path[i])
	}
	offset := count(path) - count(rule.suffix)
	every j, g in rule.suffix {
		segment_ok(g, path[offset + j])
	}
}

method_ok(rule) if count(rule.methods) == 0

method_ok(rule) if {
	some m in rule.methods
	m in {"*", method}
}

matching := [i | some i, rule in data.rules; method_ok(rule); glob_ok(rule)]

missing := [s | some s in data.rules[matching[0]].scopes; not s in input.principal.scopes]

scopes_text := concat(", ", missing)

outcome := {"decision": "allow", "rule": "default"} if {
	count(matching) == 0
	data.default == "allow"
} else := {
	"decision": "deny",
	"status": 403,
	"code": "no-scope-rule",
	"reason": sprintf("no scope rule covers %s %s", [input.method, input.path]),
	"rule": "default",
} if {
	count(matching) == 0
} else := {"decision": "allow", "rule": sprintf("rules[%d]", [matching[0]])} if {
	count(missing) == 0
} else := {
	"decision": "deny",
	"status": 403,
	"code": "missing-scope",
	"reason": sprintf("scope %s is required for %s %s", [missing[0], input.method, input.path]),
	"rule": sprintf("rules[%d]", [matching[0]]),
	"missing": concat(" ", missing),
} if {
	count(missing) == 1
} else := {
	"decision": "deny",
	"status": 403,
	"code": "missing-scope",
	"reason": sprintf("scopes %s are required for %s %s", [scopes_text, input.method, input.path]),
	"rule": sprintf("rules[%d]", [matching[0]]),
	"missing": concat(" ", missing),
}
