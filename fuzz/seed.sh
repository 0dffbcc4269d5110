#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with seed inputs, generated at run time from the shared
# traffic captures (../shared/traffic/*.har, read in place: never copied into the
# repository), the example requests (examples/requests/*.json) and the example configs
# (examples/*.toml). The corpus folders are git-ignored. Safe to run again: seeds are
# overwritten, inputs the fuzzers found are kept.
#
# Usage: fuzz/seed.sh [TRAFFIC_DIR]   (default: ../shared/traffic next to the repository)
set -euo pipefail
fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$fuzz_dir")"
traffic="${1:-$repo/../shared/traffic}"
if ! ls "$traffic"/*.har >/dev/null 2>&1; then
    echo "seed.sh: no .har files in $traffic" >&2
    exit 1
fi
cargo run --quiet --release --manifest-path "$fuzz_dir/seedgen/Cargo.toml" -- \
    "$traffic" "$repo/examples" "$fuzz_dir/corpus"
