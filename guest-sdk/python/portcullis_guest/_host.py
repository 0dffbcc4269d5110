"""Where the capability wrappers send their calls: the host's imports inside a component,
the in-process stand-in of `portcullis_guest.testing` natively (unit tests)."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

#: True inside a component (componentize-py's CPython reports the `wasi` platform).
IN_COMPONENT = sys.platform == "wasi"

# The pyproject.toml name of each capability, by the generated module's name.
_CAPABILITY = {"log": "log", "clock": "clock", "rate_limit": "rate-limit", "data": "data"}


def capability(module: str) -> ModuleType:
    """The generated import module for a capability (`log`, `clock`, `rate_limit`, `data`),
    or natively the test stand-in."""
    if not IN_COMPONENT:
        from . import testing

        return testing.fake_capability(module)
    try:
        return importlib.import_module(f"wit_world.imports.{module}")
    except ImportError:
        raise RuntimeError(
            f"this policy calls the `{_CAPABILITY[module]}` capability but was not built with "
            f'it: add "{_CAPABILITY[module]}" to `capabilities` under [tool.portcullis] in its '
            "pyproject.toml (and grant it in portcullis.toml)"
        ) from None
