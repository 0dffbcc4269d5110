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


def describe_exception(error: BaseException) -> str:
    """`RuntimeError: boom (at my_policy.py:12 in on_request)`: the exception and where it
    was raised, innermost frame first, without reading source files (a component built with
    `--stub-wasi` has no filesystem, so the `traceback` module cannot be used)."""
    frames = []
    tb = error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append(f"{code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno} in {code.co_name}")
        tb = tb.tb_next
    where = f" (at {' <- '.join(reversed(frames[-4:]))})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def report_exception(error: BaseException) -> None:
    """Writes an exception escaping the policy's code to the host's log, when the policy was
    built with the `log` capability; the export glue then lets it trap the instance (the
    host denies, fail-closed, with an error that names the policy)."""
    host = _MODULES.get("log")
    if host is None:
        return
    try:
        host.write(host.Level.ERROR, "policy raised " + describe_exception(error))
    except BaseException:  # the trap that follows is what matters
        pass
