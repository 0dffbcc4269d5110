"""`pii-redact`: removes or masks personal data in responses, and in requests bound for
third parties.

- Response phase: every configured JSON pointer is redacted in the response body, and every
  configured header is removed from the response.
- Request phase: when the request's host is one of `third_party_hosts`, the same pointers
  are redacted in the request body before it leaves.

The policy never reads a body: it names the fields and the host applies the redactions (a
pointer that matches nothing is not an error). So its metadata asks for no bodies, and the
host never copies them into it. The Python twin of policies/rust/pii-redact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from portcullis_guest import (
    Metadata,
    Policy,
    RedactBuilder,
    SettingsError,
    allow,
    ascii_lower,
    export_policy,
    host,
    redact,
    types,
)

VERSION = "0.1.0"


@dataclass
class Settings:
    """The policy's settings."""

    #: JSON pointers (RFC 6901) of the fields to redact; a `*` segment stands for every
    #: array element or object member, e.g. `/customers/*/email`.
    fields: List[str] = field(default_factory=list)
    #: Replace redacted fields with this text; when absent they are removed.
    mask: Optional[str] = None
    #: Hosts whose request bodies are redacted too (case-insensitive, without port);
    #: `*.example.com` covers every subdomain of `example.com`, and `*` every host.
    third_party_hosts: List[str] = field(default_factory=list)
    #: Response headers to remove (case-insensitive), e.g. `x-internal-user-email`.
    headers: List[str] = field(default_factory=list)


class PiiRedact(Policy):
    Settings = Settings

    def metadata(self) -> Metadata:
        return Metadata("pii-redact", VERSION).both_phases()

    def validate(self, settings: Settings) -> None:
        if not settings.fields and not settings.headers:
            raise SettingsError("fields", "name at least one field (or a header) to redact")
        for i, pointer in enumerate(settings.fields):
            message = check_pointer(pointer)
            if message is not None:
                raise SettingsError(f"fields[{i}]", message)
        for i, name in enumerate(settings.third_party_hosts):
            if name == "*":
                continue
            bare = name[2:] if name.startswith("*.") else name
            if not bare or any(c in bare for c in "/:* "):
                raise SettingsError(
                    f"third_party_hosts[{i}]",
                    f"`{name}` must be a host name such as api.example.com or *.example.com",
                )
        for i, name in enumerate(settings.headers):
            if not name.strip():
                raise SettingsError(f"headers[{i}]", "must not be empty")

    def on_request(self, settings: Settings, req: types.Request):
        target = host(req)
        if not any(host_matches(pattern, target) for pattern in settings.third_party_hosts):
            return allow()
        return body_fields(settings).label("rule", "third-party-request").label("host", target)

    def on_response(self, settings: Settings, req: types.Request, resp: types.Response):
        redaction = body_fields(settings)
        for name in settings.headers:
            redaction = redaction.header(name)
        return redaction.label("rule", "response")


def body_fields(settings: Settings) -> RedactBuilder:
    """One redaction per configured pointer: masked when a mask is set, else removed."""
    redaction = redact()
    for pointer in settings.fields:
        if settings.mask is not None:
            redaction = redaction.json_mask(pointer, settings.mask)
        else:
            redaction = redaction.json(pointer)
    return redaction


def check_pointer(pointer: str) -> Optional[str]:
    """Why `pointer` is not a JSON pointer to a field, if it is not."""
    if not pointer.startswith("/"):
        return f"`{pointer}` must be a JSON pointer starting with /, e.g. /customer/email"
    # RFC 6901: `~` only as `~0` (for `~`) or `~1` (for `/`).
    chars = iter(pointer)
    for c in chars:
        if c == "~" and next(chars, None) not in ("0", "1"):
            return f"`{pointer}`: `~` must be escaped as ~0 (and `/` inside a name as ~1)"
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


Handler = export_policy(PiiRedact)
