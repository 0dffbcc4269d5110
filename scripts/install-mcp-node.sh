#!/usr/bin/env bash
# Installs the official MCP TypeScript SDKs, pinned by tests/mcp_sdk/package.json and its
# package-lock.json, into <repo>/target/mcp-node (with `npm ci`, so every install is the
# locked tree), for tests/mcp_sdks.rs:
#   - @modelcontextprotocol/sdk 1.x: the 2025 generation (up to 2025-11-25);
#   - @modelcontextprotocol/client and /server 2.x: 2026-07-28 (and the 2025 handshake).
#
#   scripts/install-mcp-node.sh   # idempotent: does nothing when the locked tree is installed
#
# Needs node 20 or later and npm, and network access to npm the first time. Prints the
# node_modules folder on stdout (the test programs are CommonJS: run them with NODE_PATH set
# to it).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source_dir="$repo/tests/mcp_sdk"
dest="$repo/target/mcp-node"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "error: node and npm are needed for tests/mcp_sdks.rs (the MCP TypeScript SDKs)" >&2
    echo "       e.g. apt-get install nodejs npm, or https://nodejs.org" >&2
    exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [[ "$node_major" -lt 20 ]]; then
    echo "error: node $(node --version) is too old; the MCP TypeScript SDK 2.x needs Node.js 20 or later" >&2
    exit 1
fi

# The lock's digest, recorded after a successful install: a changed pin reinstalls.
want="$(cat "$source_dir/package.json" "$source_dir/package-lock.json" | sha256sum | cut -d' ' -f1)"
stamp="$dest/.installed"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" || ! -d "$dest/node_modules" ]]; then
    echo "installing the MCP TypeScript SDKs (tests/mcp_sdk/package-lock.json) into $dest" >&2
    mkdir -p "$dest"
    rm -f "$stamp"
    cp "$source_dir/package.json" "$source_dir/package-lock.json" "$dest/"
    (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$want" > "$stamp"
fi
echo "$dest/node_modules"
