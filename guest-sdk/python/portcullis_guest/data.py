"""Capability `data`: read-only named data sets (allow-lists, field catalogues) loaded by the
host from its configured data folder.

Needs `"data"` in the policy's `[tool.portcullis] capabilities` and a grant in
`portcullis.toml`."""

from __future__ import annotations

from typing import Optional

from ._host import capability


def contains(set_name: str, key: str) -> bool:
    """Whether the set `set_name` contains `key` (false when the set does not exist)."""
    return capability("data").contains(set_name, key)


def get(set_name: str, key: str) -> Optional[str]:
    """The value stored under `key` in the set `set_name`, if any."""
    return capability("data").get(set_name, key)
