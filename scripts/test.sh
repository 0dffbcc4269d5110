#!/usr/bin/env bash
# Runs every test: the host and CLI (with real components built from policies/, real servers
# on loopback: the proxy, nginx), and the guest SDK's and reference policies' own unit tests.
# Installs what is missing first (the wasm32-wasip2 target via build-policies.sh, nginx,
# componentize-py and componentize-js into target/).
# This is the command the README and CI (.ci/run) use.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# Installs Debian packages when PROGRAM is missing: `need PROGRAM WHY PACKAGE...`.
need() {
    local program="$1" why="$2"
    shift 2
    if command -v "$program" >/dev/null || [[ -x "/usr/sbin/$program" ]]; then
        return
    fi
    echo "==> installing $* ($why)" >&2
    if ! command -v apt-get >/dev/null; then
        echo "$program is missing and this is not a Debian-like system: install it ($why), then run this again" >&2
        exit 1
    fi
    local sudo=""
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}
# Format and lints first: they take seconds and refuse a change before the long tests run.
# One rustfmt.toml for the whole tree; clippy with the workspace lints (Cargo.toml), every
# warning an error.
for manifest in Cargo.toml policies/Cargo.toml benches/compare/Cargo.toml; do
    cargo fmt --all --check --manifest-path "$manifest"
done
cargo clippy --workspace --all-targets --quiet -- -D warnings

need nginx "for tests/differential.rs and tests/nginx.rs" nginx-light
need curl "for tests/tls.rs and tests/upstream_tls.rs (HTTP/2, client certificates)" curl
# Shared state for replicas (docs/replicas.md): the tests start their own servers, in
# temporary folders on free ports; the packages' own services are not used.
need redis-server "for tests/state_redis.rs and tests/replicas.rs" redis-server
if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
    need postgres "for the PostgreSQL approval store's tests" postgresql
fi
need node "for componentize-js, the JavaScript policies' build" nodejs npm
# The approval inbox's browser test (tests/inbox.rs) drives Debian's headless chromium through
# chromedriver; DejaVu gives its screenshots a font.
need chromium "for tests/inbox.rs (the approval inbox in a real browser)" chromium fonts-dejavu-core
need chromedriver "for tests/inbox.rs (WebDriver to chromium)" chromium-driver

# Builds the components once; the tests reuse them (and would build them themselves).
bash scripts/build-policies.sh
# The Python policies (installs componentize-py into target/python-venv; runs the Python
# SDK's and policies' unit tests natively first): tests/conformance.rs compares them with
# the Rust ones, tests/scaffold.rs builds a new Python project with them.
bash scripts/build-python-policies.sh --test
# The JavaScript policies (installs componentize-js into target/js-tools with npm; runs the
# JS SDK's and policies' node tests first): compared with the Rust ones in
# tests/conformance.rs, and the scaffold for `portcullis new --lang js` in tests/scaffold.rs.
bash scripts/build-js-policies.sh --test
bash scripts/install-mcp.sh >/dev/null  # the MCP Python SDK (target/mcp-venv) for tests/mcp.rs
bash scripts/install-mcp-node.sh >/dev/null  # the MCP TypeScript SDKs (target/mcp-node) for tests/mcp_sdks.rs
cargo test --workspace --all-targets
# `--all-targets` leaves out doctests: the library's (the crate-root example embeds a policy
# set) run here, and its documentation must build without a warning (`missing_docs` on).
cargo test --doc -p portcullis-host --all-features --quiet
RUSTDOCFLAGS="-D warnings" cargo doc -p portcullis-host --no-deps --all-features --quiet
cargo test --manifest-path policies/Cargo.toml
