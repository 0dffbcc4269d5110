#!/usr/bin/env bash
# Runs every test: the host and CLI (with real components built from policies/, real servers
# on loopback: the proxy, nginx), and the guest SDK's and reference policies' own unit tests.
# Installs what is missing first (the wasm32-wasip2 target via build-policies.sh, nginx).
# This is the command the README and CI (.ci/run) use.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# nginx for the forward-auth end-to-end test (tests/nginx.rs), from the system's packages.
if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
    echo "==> installing nginx (for tests/nginx.rs)" >&2
    sudo=""
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    if command -v apt-get >/dev/null; then
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nginx-light
    else
        echo "nginx is missing and this is not a Debian-like system: install nginx, then run this again" >&2
        exit 1
    fi
fi

# Builds the components once; the tests reuse them (and would build them themselves).
bash scripts/build-policies.sh
# The Python policies (installs componentize-py into target/python-venv; runs the Python
# SDK's and policies' unit tests natively first): tests/conformance.rs compares them with
# the Rust ones, tests/scaffold.rs builds a new Python project with them.
bash scripts/build-python-policies.sh --test
cargo test --workspace --all-targets
cargo test --manifest-path policies/Cargo.toml
