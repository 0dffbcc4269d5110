"""`minimise`: data minimisation from settings alone. Masks values by member name
(`json-name`) and by what the host's detectors recognise (`detected`), per direction, host,
path and kind of caller, and more strictly for third-party hosts.

The policy never reads a body: it turns the rules that match an exchange into targets and
masks, and the host finds and rewrites the values (contract 0.2). So its metadata asks for
no bodies. The Python twin of policies/rust/minimise, which documents the rule semantics:
the defaults (when `defaults = true`) then `rules`, in order; every matching rule applies;
per rule its `fields` then its `detect` names, all with its `mask`; the label `rules` names
the rules that matched; `allow` when none did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Literal, Optional, Tuple, Union

from portcullis_guest import (
    Metadata,
    Policy,
    SettingsError,
    allow,
    ascii_lower,
    export_policy,
    fixed_length,
    host,
    keep_email_domain,
    keep_last,
    kind_name,
    pseudonym,
    redact,
    types,
)

VERSION = "0.1.0"

#: The detectors the host has (docs/minimisation.md, "Detectors").
DETECTORS = ("card-number", "iban", "email", "phone", "jwt", "secret")

#: The principal kinds a rule may select.
KINDS = ("anonymous", "user", "service", "agent")


@dataclass
class Rule:
    """One rule: what to mask, how, and where."""

    #: `keep-last:N`, `email-domain`, `fixed:N`, `pseudonym`, `remove` or `replace:TEXT`.
    mask: str
    #: The rule's name in the audit label `rules`; `rules[N]` when absent.
    name: Optional[str] = None
    #: Member names masked at any depth of a JSON body, e.g. `card_number`.
    fields: List[str] = field(default_factory=list)
    #: Detectors whose findings are masked: `card-number`, `iban`, `email`, `phone`, `jwt`, `secret`.
    detect: List[str] = field(default_factory=list)
    #: The phase the rule applies in.
    direction: Literal["request", "response", "both"] = "response"
    #: Only requests to these hosts (exact or `*.suffix`); every host when empty.
    hosts: List[str] = field(default_factory=list)
    #: Only these path globs (`*` one segment, `**` any number); every path when empty.
    paths: List[str] = field(default_factory=list)
    #: Only callers of these kinds; every caller when empty.
    principals: List[str] = field(default_factory=list)
    #: Only when the request's host is not one of `first_party_hosts`.
    third_party: bool = False


@dataclass
class Settings:
    """The policy's settings."""

    #: Put the default ruleset (`default_rules()`) before `rules`.
    defaults: bool = False
    #: The hosts that are not third parties (case-insensitive, without port; `*.suffix`).
    first_party_hosts: List[str] = field(default_factory=list)
    #: The rules, applied in order after the defaults.
    rules: List[Rule] = field(default_factory=list)


def default_rules() -> List[Rule]:
    """The default ruleset: cards and IBANs keep their last 4 in every response, secrets
    and JWTs are removed from every response, agents see e-mail domains only and no phone
    numbers, and everything bound for or coming from a third party is masked to a fixed
    length."""
    return [
        Rule("keep-last:4", "default-cards", ["card_number"], ["card-number"]),
        Rule("keep-last:4", "default-iban", ["iban"], ["iban"]),
        Rule("remove", "default-secrets", [], ["secret", "jwt"]),
        Rule("email-domain", "default-agent-email", [], ["email"], principals=["agent"]),
        Rule("fixed:8", "default-agent-phone", [], ["phone"], principals=["agent"]),
        Rule(
            "fixed:8",
            "default-third-party",
            ["card_number", "iban"],
            ["card-number", "iban", "email", "phone"],
            direction="both",
            third_party=True,
        ),
    ]


class Minimise(Policy):
    Settings = Settings

    def metadata(self) -> Metadata:
        return Metadata("minimise", VERSION).both_phases()

    def validate(self, settings: Settings) -> None:
        if not settings.rules and not settings.defaults:
            raise SettingsError("rules", "name at least one rule, or set defaults = true")
        for i, name in enumerate(settings.first_party_hosts):
            message = check_host(name)
            if message is not None:
                raise SettingsError(f"first_party_hosts[{i}]", message)
        for i, rule in enumerate(settings.rules):
            problem = check_rule(rule)
            if problem is not None:
                raise SettingsError(f"rules[{i}]{problem[0]}", problem[1])
        third_party = settings.defaults or any(r.third_party for r in settings.rules)
        if third_party and not settings.first_party_hosts:
            raise SettingsError(
                "first_party_hosts",
                "rules with third_party = true (the defaults have one) need the first-party hosts: name at least one",
            )

    def on_request(self, settings: Settings, req: types.Request):
        return decide(settings, req, "request")

    def on_response(self, settings: Settings, req: types.Request, resp: types.Response):
        return decide(settings, req, "response")


def decide(settings: Settings, req: types.Request, phase: str):
    """The redactions of every rule that matches `req` in `phase`, in order."""
    target = host(req)
    first_party = any(host_matches(pattern, target) for pattern in settings.first_party_hosts)
    rules = [("", rule) for rule in (default_rules() if settings.defaults else [])]
    rules += [(f"rules[{i}]", rule) for i, rule in enumerate(settings.rules)]
    redaction = redact()
    names: List[str] = []
    for fallback, rule in rules:
        if not rule_matches(rule, req, target, first_party, phase):
            continue
        # Validated in `init`; should the mask not parse here, remove rather than pass on.
        treatment = parse_mask(rule.mask)
        action = treatment if not isinstance(treatment, str) else types.Action_Remove()
        for name in rule.fields:
            redaction = redaction.redaction(types.Redaction(types.Target_JsonName(name), action))
        for detector in rule.detect:
            redaction = redaction.redaction(types.Redaction(types.Target_Detected(detector), action))
        names.append(rule.name if rule.name is not None else fallback)
    if not names:
        return allow()
    return redaction.label("rules", ",".join(names))


def rule_matches(rule: Rule, req: types.Request, target: str, first_party: bool, phase: str) -> bool:
    """Whether `rule` applies to `req` in `phase`."""
    return (
        rule.direction in ("both", phase)
        and (not rule.principals or kind_name(req.principal.kind) in rule.principals)
        and (not rule.hosts or any(host_matches(pattern, target) for pattern in rule.hosts))
        and (not rule.paths or any(glob_matches(glob, req.path) for glob in rule.paths))
        and (not rule.third_party or not first_party)
    )


def check_rule(rule: Rule) -> Optional[Tuple[str, str]]:
    """Why `rule` is not usable: the key inside the rule and the message."""
    if rule.name is not None and (not rule.name.strip() or "," in rule.name):
        return ".name", "must not be empty or contain a comma"
    if not rule.fields and not rule.detect:
        return "", "name the fields or the detectors (detect) the rule masks"
    for i, name in enumerate(rule.fields):
        if not name:
            return f".fields[{i}]", "must not be empty"
    for i, name in enumerate(rule.detect):
        if name not in DETECTORS:
            return f".detect[{i}]", f"`{name}` is not a detector: use {one_of(DETECTORS)}"
    treatment = parse_mask(rule.mask)
    if isinstance(treatment, str):
        return ".mask", treatment
    for i, name in enumerate(rule.hosts):
        message = check_host(name)
        if message is not None:
            return f".hosts[{i}]", message
    for i, glob in enumerate(rule.paths):
        message = check_glob(glob)
        if message is not None:
            return f".paths[{i}]", message
    for i, kind in enumerate(rule.principals):
        if kind not in KINDS:
            return f".principals[{i}]", f"`{kind}` is not a kind of caller: use {one_of(KINDS)}"
    return None


def one_of(names) -> str:
    """`a, b or c`."""
    names = list(names)
    return names[-1] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def parse_mask(text: str) -> Union["types.Action", str]:
    """A rule's `mask` as the WIT action, or why it is not a mask (a `str`)."""
    if text == "remove":
        return types.Action_Remove()
    if text == "email-domain":
        return types.Action_Mask(keep_email_domain())
    if text == "pseudonym":
        return types.Action_Mask(pseudonym())
    if text.startswith("replace:"):
        return types.Action_Replace(text[len("replace:"):])
    if text.startswith("keep-last:"):
        n = number(text[len("keep-last:"):], 0, 1000)
        if n is None:
            return f"`{text}`: the number of characters kept must be a whole number from 0 to 1000"
        return types.Action_Mask(keep_last(n))
    if text.startswith("fixed:"):
        n = number(text[len("fixed:"):], 1, 256)
        if n is None:
            return f"`{text}`: the length must be a whole number from 1 to 256"
        return types.Action_Mask(fixed_length(n))
    return f"`{text}` is not a mask: use keep-last:N, email-domain, fixed:N, pseudonym, remove or replace:TEXT"


def number(digits: str, low: int, high: int) -> Optional[int]:
    """`digits` as a number in `low..=high`: ASCII digits only, at most 4 of them."""
    if not digits or len(digits) > 4 or any(c not in "0123456789" for c in digits):
        return None
    n = int(digits)
    return n if low <= n <= high else None


def check_host(name: str) -> Optional[str]:
    """Why `name` is not a host pattern (`api.example.com`, `*.example.com` or `*`)."""
    if name == "*":
        return None
    bare = name[2:] if name.startswith("*.") else name
    if not bare or any(c in bare for c in "/:* "):
        return f"`{name}` must be a host name such as api.example.com or *.example.com"
    return None


def host_matches(pattern: str, name: str) -> bool:
    """Whether `name` (lower-case, no port) is `pattern`, a subdomain of `example.com` for
    the pattern `*.example.com`, or anything for `*`."""
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        domain = pattern[2:]
        return (
            len(name) > len(domain) + 1
            and name.endswith(ascii_lower(domain))
            and name[len(name) - len(domain) - 1] == "."
        )
    return len(pattern) == len(name) and ascii_lower(pattern) == ascii_lower(name)


def check_glob(glob: str) -> Optional[str]:
    """Why `glob` is not a usable path glob, if it is not."""
    if not glob.startswith("/"):
        return f"`{glob}` must start with /"
    for segment in glob.split("/"):
        if "*" in segment and segment not in ("*", "**"):
            return f"`{glob}`: `{segment}` mixes * with text; * and ** must be whole segments"
    return None


def glob_matches(glob: str, path: str) -> bool:
    """Whether `path` matches `glob`: `*` is one segment, `**` any number (none too)."""
    return _matches_from([s for s in glob.split("/") if s], [s for s in path.split("/") if s])


def _matches_from(glob: List[str], path: List[str]) -> bool:
    if not glob:
        return not path
    first, rest = glob[0], glob[1:]
    if first == "**":
        return any(_matches_from(rest, path[skip:]) for skip in range(len(path) + 1))
    if not path:
        return False
    return (first == "*" or first == path[0]) and _matches_from(rest, path[1:])


Handler = export_policy(Minimise)
