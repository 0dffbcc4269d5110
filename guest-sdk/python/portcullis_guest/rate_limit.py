"""Capability `rate-limit`: counters kept by the host across evaluations (each evaluation
runs in a fresh instance, so a policy cannot count by itself).

Needs `"rate-limit"` in the policy's `[tool.portcullis] capabilities` and a grant in
`portcullis.toml`."""

from __future__ import annotations

from typing import Any

from ._host import capability


def take(key: str, limit: int, window_ms: int) -> Any:
    """Takes one unit from the counter `key`, which allows `limit` units per `window_ms`
    milliseconds (a fixed window). Returns `.allowed`, `.remaining` and `.reset_after_ms`.
    Keys are private to each policy."""
    return capability("rate_limit").take(key, limit, window_ms)
