#!/usr/bin/env bash
# The quick start in one command: installs what is needed (the wasm32-wasip2 Rust target),
# builds the reference policies and the `portcullis` command, evaluates the sample requests
# in examples/requests/ through the example policy set (examples/portcullis.toml), then
# replays the recorded traffic in ../shared/traffic/ as an AI agent acting for a user and
# prints the decisions.
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

traffic="$repo/../shared/traffic"
if compgen -G "$traffic/*.har" >/dev/null; then
    echo "==> replaying $traffic/*.har through policy-tests/portcullis.toml as agent support-bot acting for alice" >&2
    echo >&2
    replay_format=table
    [[ "$format" == json ]] && replay_format=json
    "$portcullis" replay --config policy-tests/portcullis.toml --format "$replay_format" \
        --as agent:support-bot --on-behalf-of alice \
        --scope pets:read --scope library:read --scope fleet:write --scope pastries:read \
        "$traffic"/*.har
else
    echo "(no recorded traffic at $traffic; skipping the replay)" >&2
fi
