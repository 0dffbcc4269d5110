"""Capability `clock`: the time. Prefer `request.received_at_ms`, which needs no grant.

Needs `"clock"` in the policy's `[tool.portcullis] capabilities` and a grant in
`portcullis.toml`."""

from __future__ import annotations

from ._host import capability


def now_ms() -> int:
    """Milliseconds since the Unix epoch (during replay this may be the recorded time)."""
    return capability("clock").now_ms()
