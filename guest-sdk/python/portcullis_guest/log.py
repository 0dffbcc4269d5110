"""Capability `log`: write to the host's log, tagged with the policy's name.

Needs `"log"` in the policy's `[tool.portcullis] capabilities` and a grant in
`portcullis.toml`. The host may drop messages above a rate or size limit."""

from __future__ import annotations

from ._host import capability

#: The levels, as `log.write` takes them: "trace", "debug", "info", "warn", "error".
LEVELS = ("trace", "debug", "info", "warn", "error")


def write(level: str, message: str) -> None:
    """Writes one message at `level` (one of `LEVELS`)."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    host = capability("log")
    host.write(host.Level[level.upper()], message)


def trace(message: str) -> None:
    write("trace", message)


def debug(message: str) -> None:
    write("debug", message)


def info(message: str) -> None:
    write("info", message)


def warn(message: str) -> None:
    write("warn", message)


def error(message: str) -> None:
    write("error", message)
