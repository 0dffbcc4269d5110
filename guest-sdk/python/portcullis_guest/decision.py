"""Builders for the outcome a policy returns, and accessors for inspecting one in tests.

`allow()` and `deny(...)` are complete outcomes; `redact()` and `require_approval(...)` return
builders. All of them take audit labels with `.label(key, value)`. A policy may return any of
them: the export glue calls `.build()` on a builder (in tests, call it yourself, or use the
accessors, which builders have too).
"""

from __future__ import annotations

from typing import List, Optional, Tuple, Union

from ._wit import types

#: The time-to-live of an approval when `.ttl()` is not called: 15 minutes.
DEFAULT_APPROVAL_TTL_SECONDS = 900

_U16 = (0, 0xFFFF)
_U32 = (0, 0xFFFF_FFFF)


def _check_int(what: str, value: int, bounds: Tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{what} must be between {bounds[0]} and {bounds[1]}, not {value}")
    return value


def _check_str(what: str, value: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    return value


class Outcome:
    """A decision plus labels for the audit record: the SDK's side of the WIT `outcome`.

    Build one with `allow()`, `deny(...)`, `redact()...` or `require_approval(...)`;
    `to_wit()` turns it into the generated record the host receives.
    """

    __slots__ = ("decision", "labels")

    def __init__(self, decision: "types.Decision", labels: Optional[List[Tuple[str, str]]] = None):
        self.decision = decision
        self.labels: List[Tuple[str, str]] = list(labels or [])

    def label(self, key: str, value: str) -> "Outcome":
        """Adds a key/value label for the audit record, e.g. `("rule", "agents-read-only")`.
        Never put secrets in labels."""
        self.labels.append((_check_str("label key", key), _check_str("label value", value)))
        return self

    def build(self) -> "Outcome":
        """Itself (so that code can call `.build()` on any outcome or builder)."""
        return self

    def to_wit(self) -> "types.Outcome":
        """The generated WIT record."""
        return types.Outcome(self.decision, list(self.labels))

    # Accessors, mostly for tests.

    def is_allow(self) -> bool:
        """Whether the decision is `allow`."""
        return isinstance(self.decision, types.Decision_Allow)

    def denial(self) -> Optional["types.Denial"]:
        """The denial (`.status`, `.code`, `.reason`), if the decision is `deny`."""
        return self.decision.value if isinstance(self.decision, types.Decision_Deny) else None

    def redactions(self) -> List["types.Redaction"]:
        """The redactions, if the decision is `redact` (empty otherwise)."""
        return list(self.decision.value) if isinstance(self.decision, types.Decision_Redact) else []

    def approval(self) -> Optional["types.Approval"]:
        """The approval request (`.reason`, `.approver_group`, `.ttl_seconds`), if the
        decision is `require-approval`."""
        if isinstance(self.decision, types.Decision_RequireApproval):
            return self.decision.value
        return None

    def kind(self) -> str:
        """The decision's name as the WIT spells it: `allow`, `deny`, `redact` or
        `require-approval`."""
        return {
            types.Decision_Allow: "allow",
            types.Decision_Deny: "deny",
            types.Decision_Redact: "redact",
            types.Decision_RequireApproval: "require-approval",
        }[type(self.decision)]

    def label_value(self, key: str) -> Optional[str]:
        """The value of the first label named `key`."""
        return next((v for k, v in self.labels if k == key), None)

    def __eq__(self, other: object) -> bool:
        other = as_outcome(other) if isinstance(other, (RedactBuilder, ApprovalBuilder)) else other
        if not isinstance(other, Outcome):
            return NotImplemented
        return self.decision == other.decision and self.labels == other.labels

    def __repr__(self) -> str:
        return f"Outcome({self.decision!r}, labels={self.labels!r})"


def allow() -> Outcome:
    """Let the message through unchanged."""
    return Outcome(types.Decision_Allow())


def deny(status: int, code: str, reason: str) -> Outcome:
    """Refuse the message with HTTP `status`, a machine-readable `code` (e.g.
    `missing-scope`) and a `reason` for humans. The reason reaches the caller: never put
    secrets in it."""
    return Outcome(
        types.Decision_Deny(
            types.Denial(
                _check_int("status", status, _U16),
                _check_str("code", code),
                _check_str("reason", reason),
            )
        )
    )


def keep_last(n: int) -> "types.Mask":
    """A mask keeping the last `n` characters, `*` for the others (contract 0.2)."""
    return types.Mask_KeepLast(_check_int("keep_last", n, _U32))


def keep_email_domain() -> "types.Mask":
    """A mask keeping an e-mail address's `@domain`: `*****@example.com` (contract 0.2)."""
    return types.Mask_KeepEmailDomain()


def fixed_length(n: int) -> "types.Mask":
    """A mask of exactly `n` `*`, whatever the value's length (contract 0.2)."""
    return types.Mask_FixedLength(_check_int("fixed_length", n, _U32))


def pseudonym() -> "types.Mask":
    """A keyed pseudonym (`pn_…`, HMAC-SHA256 under the host's `[redaction]` key; contract 0.2)."""
    return types.Mask_Pseudonym()


class RedactBuilder:
    """Collects redactions; see `redact()`."""

    __slots__ = ("_redactions", "_labels")

    def __init__(self) -> None:
        self._redactions: List[types.Redaction] = []
        self._labels: List[Tuple[str, str]] = []

    def _push(self, target: "types.Target", action: "types.Action") -> "RedactBuilder":
        self._redactions.append(types.Redaction(target, action))
        return self

    def json(self, pointer: str) -> "RedactBuilder":
        """Removes the body member or array element at this JSON pointer (RFC 6901, with `*`
        for every array element or object member), e.g. `/customers/*/email`."""
        return self._push(types.Target_JsonPointer(_check_str("pointer", pointer)), types.Action_Remove())

    def json_mask(self, pointer: str, mask: str) -> "RedactBuilder":
        """Replaces the body value at this JSON pointer with the JSON string `mask`."""
        return self._push(
            types.Target_JsonPointer(_check_str("pointer", pointer)),
            types.Action_Replace(_check_str("mask", mask)),
        )

    def header(self, name: str) -> "RedactBuilder":
        """Removes every header with this name (case-insensitive)."""
        return self._push(types.Target_Header(_check_str("header name", name)), types.Action_Remove())

    def header_mask(self, name: str, mask: str) -> "RedactBuilder":
        """Replaces the value of every header with this name with `mask`."""
        return self._push(
            types.Target_Header(_check_str("header name", name)),
            types.Action_Replace(_check_str("mask", mask)),
        )

    def query(self, name: str) -> "RedactBuilder":
        """Removes every query parameter with this name (request phase only)."""
        return self._push(types.Target_Query(_check_str("query name", name)), types.Action_Remove())

    def query_mask(self, name: str, mask: str) -> "RedactBuilder":
        """Replaces the value of every query parameter with this name with `mask`."""
        return self._push(
            types.Target_Query(_check_str("query name", name)),
            types.Action_Replace(_check_str("mask", mask)),
        )

    def json_name(self, name: str, mask: Optional["types.Mask"] = None) -> "RedactBuilder":
        """Removes (or, with `mask`, masks) every body member with this name at any depth
        (contract 0.2), e.g. `json_name("card_number", keep_last(4))`."""
        target = types.Target_JsonName(_check_str("member name", name))
        return self._push(target, types.Action_Remove() if mask is None else types.Action_Mask(mask))

    def detected(self, detector: str, mask: Optional["types.Mask"] = None) -> "RedactBuilder":
        """Removes (or, with `mask`, masks) what the host's detector `detector` finds in the
        body, headers and query (contract 0.2): `card-number`, `iban`, `email`, `phone`,
        `jwt`, `secret`. Inside free text only the match changes."""
        target = types.Target_Detected(_check_str("detector", detector))
        return self._push(target, types.Action_Remove() if mask is None else types.Action_Mask(mask))

    def mask(self, target: "types.Target", mask: "types.Mask") -> "RedactBuilder":
        """Masks the values `target` names (contract 0.2), e.g.
        `mask(types.Target_Header("x-customer"), pseudonym())`."""
        return self._push(target, types.Action_Mask(mask))

    def redaction(self, redaction: "types.Redaction") -> "RedactBuilder":
        """Adds a redaction built elsewhere."""
        self._redactions.append(redaction)
        return self

    def label(self, key: str, value: str) -> "RedactBuilder":
        """Adds a label for the audit record."""
        self._labels.append((_check_str("label key", key), _check_str("label value", value)))
        return self

    def is_empty(self) -> bool:
        """Whether no redaction has been added yet."""
        return not self._redactions

    def build(self) -> Outcome:
        """The outcome: `redact` with the collected redactions, or `allow` when there are
        none (the labels are kept either way)."""
        if self._redactions:
            decision = types.Decision_Redact(list(self._redactions))
        else:
            decision = types.Decision_Allow()
        return Outcome(decision, self._labels)

    # The accessors of the outcome it builds, so tests need not call build().
    def is_allow(self) -> bool:
        return self.build().is_allow()

    def redactions(self) -> List["types.Redaction"]:
        return self.build().redactions()

    def label_value(self, key: str) -> Optional[str]:
        return self.build().label_value(key)

    def kind(self) -> str:
        return self.build().kind()


def redact() -> RedactBuilder:
    """Let the message through with fields removed or masked, which the host applies:
    `redact().json("/email").json_mask("/phone", "***").header("x-api-key")`.

    A redaction that ends up with no targets becomes `allow`."""
    return RedactBuilder()


class ApprovalBuilder:
    """Describes an approval; see `require_approval()`."""

    __slots__ = ("_reason", "_group", "_ttl", "_labels")

    def __init__(self, reason: str, approver_group: str) -> None:
        self._reason = _check_str("reason", reason)
        self._group = _check_str("approver group", approver_group)
        self._ttl = DEFAULT_APPROVAL_TTL_SECONDS
        self._labels: List[Tuple[str, str]] = []

    def ttl(self, seconds: int) -> "ApprovalBuilder":
        """How long the approval, once given, stays valid (default 900 s)."""
        self._ttl = _check_int("ttl", seconds, _U32)
        return self

    def label(self, key: str, value: str) -> "ApprovalBuilder":
        """Adds a label for the audit record."""
        self._labels.append((_check_str("label key", key), _check_str("label value", value)))
        return self

    def build(self) -> Outcome:
        """The `require-approval` outcome."""
        return Outcome(
            types.Decision_RequireApproval(types.Approval(self._reason, self._group, self._ttl)),
            self._labels,
        )

    def approval(self) -> Optional["types.Approval"]:
        return self.build().approval()

    def label_value(self, key: str) -> Optional[str]:
        return self.build().label_value(key)

    def kind(self) -> str:
        return self.build().kind()


def require_approval(reason: str, approver_group: str) -> ApprovalBuilder:
    """Hold the request until a member of `approver_group` confirms it:
    `require_approval("agents may not refund", "finance").ttl(3600)`."""
    return ApprovalBuilder(reason, approver_group)


OutcomeLike = Union[Outcome, RedactBuilder, ApprovalBuilder, "types.Outcome"]


def as_outcome(value: OutcomeLike) -> Outcome:
    """Any of the things a policy may return, as an `Outcome`. Anything else (e.g. `None`
    from a missing `return`) is a bug in the policy: a `TypeError`."""
    if isinstance(value, Outcome):
        return value
    if isinstance(value, (RedactBuilder, ApprovalBuilder)):
        return value.build()
    if isinstance(value, types.Outcome):
        return Outcome(value.decision, value.labels)
    raise TypeError(
        "a policy must return an outcome (allow(), deny(...), redact()..., "
        f"require_approval(...)), not {type(value).__name__}"
    )
