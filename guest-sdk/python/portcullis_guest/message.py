"""Read helpers on the boundary types: headers, query parameters, the principal, bodies,
JSON pointers.

The generated records (`Request`, `Response`, `Principal`, `Body`) are plain dataclasses;
these functions answer the questions policies ask most often without each policy
re-implementing case-insensitive lookups or JSON sniffing. They mirror the Rust SDK's
methods (`req.header(..)` there is `header(req, ..)` here).
"""

from __future__ import annotations

import json
from typing import Any, Iterator, List, Optional, Union

from ._wit import types

Message = Union["types.Request", "types.Response"]
PrincipalOrRequest = Union["types.Principal", "types.Request"]

_ASCII_UPPER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_ASCII_LOWER = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}


def ascii_lower(text: str) -> str:
    """`text` with ASCII letters lower-cased and everything else untouched (what HTTP means
    by case-insensitive, and what Rust's `to_ascii_lowercase` does)."""
    return text.translate(_ASCII_UPPER)


def ascii_upper(text: str) -> str:
    """`text` with ASCII letters upper-cased and everything else untouched."""
    return text.translate(_ASCII_LOWER)


def _eq_ignore_ascii_case(a: str, b: str) -> bool:
    return len(a) == len(b) and ascii_lower(a) == ascii_lower(b)


def _principal(of: PrincipalOrRequest) -> "types.Principal":
    return of.principal if isinstance(of, types.Request) else of


# Headers and query parameters.


def header(message: Message, name: str) -> Optional[str]:
    """The value of the first header called `name`, ignoring ASCII case."""
    return next(header_values(message, name), None)


def header_values(message: Message, name: str) -> Iterator[str]:
    """Every value of the headers called `name`, ignoring ASCII case, in order."""
    return (v for k, v in message.headers if _eq_ignore_ascii_case(k, name))


def query(request: "types.Request", name: str) -> Optional[str]:
    """The first query parameter called `name` (exact match: query keys are case-sensitive)."""
    return next((v for k, v in request.query if k == name), None)


def host(request: "types.Request") -> str:
    """The target host without the port, lower-cased as hosts compare: `api.example.com` for
    `API.example.com:8443`, `::1` for `[::1]:8080`."""
    return ascii_lower(host_of(request.authority))


def host_of(authority: str) -> str:
    """The host part of an authority: without `userinfo@`, without the port, IPv6 brackets
    removed."""
    if "@" in authority:
        authority = authority.rsplit("@", 1)[1]
    if authority.startswith("["):
        rest = authority[1:]
        return rest.split("]", 1)[0]
    name, colon, port = authority.rpartition(":")
    if colon and all(c in "0123456789" for c in port):
        return name
    return authority


def is_method(request: "types.Request", method: str) -> bool:
    """Whether the method is `method`, ignoring ASCII case."""
    return _eq_ignore_ascii_case(request.method, method)


# The principal. Each takes a principal or a request (meaning its principal).


def has_scope(of: PrincipalOrRequest, scope: str) -> bool:
    """Whether the credential carries `scope` (exact, case-sensitive match)."""
    return scope in _principal(of).scopes


def claim(of: PrincipalOrRequest, name: str) -> Optional[str]:
    """The value of the claim `name`, if the host passed it on."""
    return next((v for k, v in _principal(of).claims if k == name), None)


def is_anonymous(of: PrincipalOrRequest) -> bool:
    """Whether no credential was presented."""
    return _principal(of).kind == types.PrincipalKind.ANONYMOUS


def is_user(of: PrincipalOrRequest) -> bool:
    """Whether the caller is a human user."""
    return _principal(of).kind == types.PrincipalKind.USER


def is_service(of: PrincipalOrRequest) -> bool:
    """Whether the caller is a machine client (a service)."""
    return _principal(of).kind == types.PrincipalKind.SERVICE


def is_agent(of: PrincipalOrRequest) -> bool:
    """Whether the caller is an AI agent."""
    return _principal(of).kind == types.PrincipalKind.AGENT


def acting_for(of: PrincipalOrRequest) -> Optional[str]:
    """The user this caller acts for, if any (an empty string counts as none)."""
    user = _principal(of).on_behalf_of
    return user if user else None


def kind_name(kind: "types.PrincipalKind") -> str:
    """The kind's name as the WIT spells it: `anonymous`, `user`, `service` or `agent`."""
    return kind.name.lower()


# Bodies.


def has_json_content_type(body: "types.Body") -> bool:
    """Whether the content type says JSON: `application/json`, `text/json` or any `+json`
    type, ignoring parameters and case."""
    if body.content_type is None:
        return False
    essence = ascii_lower(body.content_type.split(";", 1)[0].strip())
    return essence in ("application/json", "text/json") or essence.endswith("+json")


def looks_like_json(body: "types.Body") -> bool:
    """Whether the bytes start (after whitespace) like a JSON object or array. Recorded
    traffic often labels JSON as `text/plain` or not at all."""
    stripped = bytes(body.bytes).lstrip(b" \t\n\r\x0c")
    return stripped[:1] in (b"{", b"[")


_NO_VALUE = object()


def _parse_body(body: Optional["types.Body"]) -> Any:
    if body is None or not (has_json_content_type(body) or looks_like_json(body)):
        return _NO_VALUE
    # Strict UTF-8 and no NaN/Infinity, as serde_json in the Rust SDK. (Decoding here also
    # keeps `json` from importing UTF-16/32 codecs at run time, which a component built
    # with `--stub-wasi` cannot do: it has no filesystem.)
    try:
        return json.loads(bytes(body.bytes).decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return _NO_VALUE


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_body(message: Union[Message, "types.Body"]) -> Any:
    """The body parsed as JSON, when its content type is JSON-ish or its bytes look like
    JSON, and they parse; else `None`. Needs `needs_request_body()` /
    `needs_response_body()` in the metadata, else the host never sends a body. A truncated
    body does not parse: check `body.truncated` when the policy must see everything."""
    body = message if isinstance(message, types.Body) else message.body
    value = _parse_body(body)
    return None if value is _NO_VALUE else value


# JSON pointers.


def _segments(pointer: str) -> List[Optional[str]]:
    """The segments of an RFC 6901 pointer, `None` for a `*` wildcard segment."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"`{pointer}` is not a JSON pointer: it must be empty or start with /")
    segments: List[Optional[str]] = []
    for raw in pointer[1:].split("/"):
        if raw == "*":
            segments.append(None)
            continue
        out = []
        i = 0
        while i < len(raw):
            c = raw[i]
            if c == "~":
                nxt = raw[i + 1 : i + 2]
                if nxt not in ("0", "1"):
                    raise ValueError(
                        f"`{pointer}`: `~` must be escaped as ~0 (and `/` inside a name as ~1)"
                    )
                out.append("~" if nxt == "0" else "/")
                i += 2
            else:
                out.append(c)
                i += 1
        segments.append("".join(out))
    return segments


def _array_index(key: str) -> Optional[int]:
    """The array index a segment names: `0` or ASCII digits without a leading zero."""
    if not key or not (key.isascii() and key.isdigit()) or (len(key) > 1 and key[0] == "0"):
        return None
    return int(key)


def _document(doc_or_message: Any) -> Any:
    if isinstance(doc_or_message, (types.Request, types.Response)):
        return _parse_body(doc_or_message.body)
    if isinstance(doc_or_message, types.Body):
        return _parse_body(doc_or_message)
    return doc_or_message


def json_pointer_all(doc_or_message: Any, pointer: str) -> List[Any]:
    """Every value the JSON pointer (RFC 6901) matches, in document order, where a `*`
    segment stands for every element of an array or every member of an object (as in
    redaction targets): `json_pointer_all(doc, "/customers/*/email")`.

    `doc_or_message` is parsed JSON, or a request, response or body whose body is parsed
    first (each call parses it again: for several lookups, call `json_body` once). A pointer
    that matches nothing gives `[]`; one that is not a pointer raises `ValueError`."""
    segments = _segments(pointer)
    current = _document(doc_or_message)
    if current is _NO_VALUE:
        return []
    values = [current]
    for segment in segments:
        following = []
        for value in values:
            if isinstance(value, dict):
                if segment is None:
                    following.extend(value.values())
                elif segment in value:
                    following.append(value[segment])
            elif isinstance(value, list):
                if segment is None:
                    following.extend(value)
                else:
                    index = _array_index(segment)
                    if index is not None and index < len(value):
                        following.append(value[index])
        values = following
        if not values:
            break
    return values


def json_pointer(doc_or_message: Any, pointer: str) -> Any:
    """The first value the JSON pointer matches (see `json_pointer_all`, which also tells a
    JSON `null` from no match), or `None`."""
    values = json_pointer_all(doc_or_message, pointer)
    return values[0] if values else None
