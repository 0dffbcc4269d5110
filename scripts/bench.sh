#!/usr/bin/env bash
# Runs issue 6's comparison suite in one command: builds the policy components, then the
# criterion suite of benches/compare/ (Wasm policies fresh and reused vs the same rules in
# native Rust, Cedar and Rego; JSON redaction vs serde_json; policy sets of 1/4/16; replay
# throughput; cold start of 10 cached policies; memory per live instance) and prints every
# result as a ratio to its baseline from the same run, with the issue's targets met or not.
#
#   scripts/bench.sh                                       # everything (~6 minutes of measuring)
#   scripts/bench.sh --warm-up-time 1 --measurement-time 3 # quicker, noisier
#   scripts/bench.sh decide_                               # only groups whose name matches
#
# Arguments go to criterion. benches/compare/ is a workspace of its own (cedar-policy and
# regorus stay out of the test command's build) that shares <repo>/target; the first run
# compiles it (several minutes on 2 cores). The variants are checked to decide alike
# before anything is timed; `cargo test --release` inside benches/compare/ runs the same
# check as a test.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/build-policies.sh" >/dev/null
# From inside the crate, so cargo reads its .cargo/config.toml (the shared target folder).
cd "$repo/benches/compare"
exec cargo bench --bench suite -- "$@"
