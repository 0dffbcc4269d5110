#!/usr/bin/env bash
# Installs the official MCP Python SDK (PyPI package `mcp`, pinned below) into
# <repo>/target/mcp-venv, for tests/mcp.rs: its FastMCP server and its client talk to each
# other through `portcullis serve`'s MCP front door on loopback.
#
#   scripts/install-mcp.sh       # idempotent: does nothing when the pinned version is there
#
# Needs python3 (3.10 or later) with the venv module, and network access to PyPI the first
# time. Prints the venv's python on stdout.
set -euo pipefail

MCP_VERSION="2.3.0"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/target/mcp-venv"
python="$venv/bin/python3"

if ! command -v python3 >/dev/null; then
    echo "error: python3 is not installed; tests/mcp.rs needs it for the MCP Python SDK" >&2
    echo "       e.g. apt-get install python3 python3-venv python3-pip" >&2
    exit 1
fi

installed="$("$python" -c 'import importlib.metadata as m; print(m.version("mcp"))' 2>/dev/null || true)"
if [[ "$installed" != "$MCP_VERSION" ]]; then
    if [[ ! -x "$python" ]]; then
        echo "creating $venv" >&2
        if ! python3 -m venv "$venv" >&2; then
            echo "error: python3 cannot create a virtual environment; install its venv module (apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
    echo "installing mcp $MCP_VERSION into $venv" >&2
    "$python" -m pip install --quiet --disable-pip-version-check "mcp==$MCP_VERSION" >&2
fi
echo "$python"
