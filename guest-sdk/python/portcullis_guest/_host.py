"""Where the capability wrappers send their calls: the host's imports inside a component,
the in-process stand-in of `portcullis_guest.testing` natively (unit tests)."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Dict

#: True inside a component (componentize-py's CPython reports the `wasi` platform).
IN_COMPONENT = sys.platform == "wasi"

# The pyproject.toml name of each capability, by the generated module's name.
_CAPABILITY = {"log": "log", "clock": "clock", "rate_limit": "rate-limit", "data": "data"}

# Imported now, while componentize-py pre-initialises the component at build time: a
# component built with `--stub-wasi` has no filesystem at run time, so nothing can be
# imported then. A policy's world has only the capabilities its pyproject.toml lists.
_MODULES: Dict[str, ModuleType] = {}
if IN_COMPONENT:
    for _name in _CAPABILITY:
        try:
            _MODULES[_name] = importlib.import_module(f"wit_world.imports.{_name}")
        except ImportError:
            pass


def capability(module: str) -> ModuleType:
    """The generated import module for a capability (`log`, `clock`, `rate_limit`, `data`),
    or natively the test stand-in."""
    if not IN_COMPONENT:
        from . import testing

        return testing.fake_capability(module)
    found = _MODULES.get(module)
    if found is None:
        raise RuntimeError(
            f"this policy calls the `{_CAPABILITY[module]}` capability but was not built with "
            f'it: add "{_CAPABILITY[module]}" to `capabilities` under [tool.portcullis] in its '
            "pyproject.toml (and grant it in portcullis.toml)"
        )
    return found
