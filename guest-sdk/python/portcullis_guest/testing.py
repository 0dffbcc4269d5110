"""For native unit tests: constructors for the boundary types, and an in-process stand-in
for the host's capabilities.

    req = request("POST", "/invoices/7", principal=agent("copilot", on_behalf_of="alice"))
    out = AgentGuard().on_request(check_settings(AgentGuard, '{"approver_group": "ops"}'), req)
    assert as_outcome(out).approval().approver_group == "ops"

The stand-in's state (clock, counters, data, logs) is per thread; `reset()` forgets it.
Inside a component the capabilities are the host's and nothing here is used.
"""

from __future__ import annotations

import json as _json
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ._wit import types

Pairs = Iterable[Tuple[str, str]]


# Principals.


def _principal(
    kind: "types.PrincipalKind",
    id: str,
    scopes: Sequence[str] = (),
    claims: Pairs = (),
    on_behalf_of: Optional[str] = None,
    credential_id: Optional[str] = None,
) -> "types.Principal":
    return types.Principal(kind, id, list(scopes), list(claims), on_behalf_of, credential_id)


def anonymous() -> "types.Principal":
    """A caller that presented no credential."""
    return _principal(types.PrincipalKind.ANONYMOUS, "")


def user(id: str, **kwargs: Any) -> "types.Principal":
    """A human user; keywords: `scopes`, `claims`, `on_behalf_of`, `credential_id`."""
    return _principal(types.PrincipalKind.USER, id, **kwargs)


def service(id: str, **kwargs: Any) -> "types.Principal":
    """A machine client; keywords as for `user`."""
    return _principal(types.PrincipalKind.SERVICE, id, **kwargs)


def agent(id: str, **kwargs: Any) -> "types.Principal":
    """An AI agent; keywords as for `user` (`on_behalf_of="alice"`)."""
    return _principal(types.PrincipalKind.AGENT, id, **kwargs)


# Messages.


def body(content_type: Optional[str], data: bytes, truncated: bool = False) -> "types.Body":
    """A body with this content type and bytes."""
    return types.Body(content_type, bytes(data), truncated)


def _body(json: Any, body_: Optional["types.Body"]) -> Optional["types.Body"]:
    if json is None:
        return body_
    text = json if isinstance(json, str) else _json.dumps(json)
    return body("application/json", text.encode())


def request(
    method: str,
    path: str,
    *,
    principal: Optional["types.Principal"] = None,
    headers: Pairs = (),
    query: Pairs = (),
    authority: str = "api.example.com",
    scheme: str = "https",
    json: Any = None,
    body: Optional["types.Body"] = None,
    operation: Optional[str] = None,
    client_address: Optional[str] = None,
    received_at_ms: int = 0,
    id: str = "test-request",
) -> "types.Request":
    """A request `method path` to `https://api.example.com` from an anonymous caller.
    `path` may carry a query string, which is split into `query` (before the `query`
    pairs given). Header names are lower-cased, as the host passes them. `json` is a body
    (JSON text, or a value to serialise) sent as `application/json`."""
    path, _, query_string = path.partition("?")
    pairs: List[Tuple[str, str]] = []
    for pair in query_string.split("&"):
        if pair:
            key, _, value = pair.partition("=")
            pairs.append((key, value))
    pairs.extend(query)
    return types.Request(
        id,
        method,
        scheme,
        authority,
        path,
        pairs,
        [(k.lower(), v) for k, v in headers],
        _body(json, body),
        principal if principal is not None else anonymous(),
        operation,
        client_address,
        received_at_ms,
    )


def response(
    status: int,
    *,
    headers: Pairs = (),
    json: Any = None,
    body: Optional["types.Body"] = None,
) -> "types.Response":
    """A response with this status, headers (names lower-cased) and body."""
    return types.Response(status, [(k.lower(), v) for k, v in headers], _body(json, body))


# The capabilities' stand-in.


class _FakeHost(threading.local):
    def __init__(self) -> None:
        self.now_ms: Optional[int] = None
        self.counters: Dict[str, Tuple[int, int]] = {}
        self.data: Dict[str, Dict[str, str]] = {}
        self.logs: List[Tuple[str, str]] = []


_HOST = _FakeHost()


def set_now_ms(now_ms: int) -> None:
    """Fixes what `clock.now_ms()` returns on this thread (the system time until called)."""
    _HOST.now_ms = now_ms


def insert_data(set_name: str, key: str, value: str = "") -> None:
    """Stores `value` under `key` in the data set `set_name` on this thread."""
    _HOST.data.setdefault(set_name, {})[key] = value


def logs() -> List[Tuple[str, str]]:
    """The messages logged on this thread so far, oldest first, as (level, message)."""
    return list(_HOST.logs)


def reset() -> None:
    """Forgets this thread's clock, counters, data and logs."""
    _HOST.__init__()


def _now_ms() -> int:
    return _HOST.now_ms if _HOST.now_ms is not None else int(time.time() * 1000)


@dataclass
class Taken:
    """What `rate_limit.take` answers natively (the same fields as the host's)."""

    allowed: bool
    remaining: int
    reset_after_ms: int


def _take(key: str, limit: int, window_ms: int) -> Taken:
    window_ms = max(window_ms, 1)
    now = _now_ms()
    start = now - now % window_ms
    window_start, count = _HOST.counters.get(key, (start, 0))
    if window_start != start:
        count = 0
    allowed = count < limit
    if allowed:
        count += 1
    _HOST.counters[key] = (start, count)
    return Taken(allowed, max(limit - count, 0), start + window_ms - now)


class _Level:
    def __getitem__(self, name: str) -> str:
        return name.lower()


_FAKES = {
    "log": SimpleNamespace(Level=_Level(), write=lambda level, message: _HOST.logs.append((level, message))),
    "clock": SimpleNamespace(now_ms=_now_ms),
    "rate_limit": SimpleNamespace(take=_take),
    "data": SimpleNamespace(
        contains=lambda s, k: k in _HOST.data.get(s, {}),
        get=lambda s, k: _HOST.data.get(s, {}).get(k),
    ),
}


def fake_capability(module: str) -> Any:
    """The stand-in for one capability module."""
    return _FAKES[module]
