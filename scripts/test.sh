#!/usr/bin/env bash
# Runs every test: the host and CLI (with real components built from policies/), and the
# guest SDK's and reference policies' own unit tests. This is the command the README and
# CI (.ci/run) use.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# Builds the components once; the tests reuse them (and would build them themselves).
bash scripts/build-policies.sh
cargo test --workspace --all-targets
cargo test --manifest-path policies/Cargo.toml
