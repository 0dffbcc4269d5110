#!/usr/bin/env bash
# The quick start in one command: installs what is needed (the wasm32-wasip2 Rust target),
# builds the reference policies and the `portcullis` command, then evaluates the sample
# requests in examples/requests/ through the example policy set (examples/portcullis.toml)
# and prints each decision.
#
#   scripts/demo.sh            # human-readable decisions
#   scripts/demo.sh --json     # the full verdicts as JSON
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

format=text
if [[ "${1:-}" == "--json" ]]; then
    format=json
fi

echo "==> building the reference policies (scripts/build-policies.sh)" >&2
bash scripts/build-policies.sh >&2
echo "==> building the portcullis command" >&2
cargo build --quiet --release --bin portcullis
portcullis="$repo/target/release/portcullis"

echo "==> evaluating examples/requests/*.json through examples/portcullis.toml" >&2
echo >&2
for request in examples/requests/*.json; do
    echo "# $(basename "$request" .json)"
    "$portcullis" eval --config examples/portcullis.toml --request "$request" --format "$format"
    echo
done
