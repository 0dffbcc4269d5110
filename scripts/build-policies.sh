#!/usr/bin/env bash
# Builds the Rust policies (the examples in policies/rust/*, the host's test fixtures in
# policies/hostile/*) into WebAssembly components.
#
# The one command that tests, the demo and CI use to get components:
#   scripts/build-policies.sh
# It works from any directory, installs the wasm32-wasip2 target if it is missing, builds the
# policies workspace in release mode and copies each component to
# <repo>/target/policies/<package-name>.wasm (e.g. agent-guard.wasm, hostile-misbehave.wasm),
# printing one line per component with its size.
#
# CARGO_TARGET_DIR is respected; it defaults to <repo>/target, the folder the rest of the
# repository builds into. The components always land in <repo>/target/policies/.
#
# Cargo runs from inside policies/, so that it reads policies/.cargo/config.toml (the 64 KiB
# guest stack every policy is linked with).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
manifest="$repo/policies/Cargo.toml"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
# Made absolute: cargo runs from policies/ below, and a relative CARGO_TARGET_DIR means the
# directory the script was started from.
[[ "$target_dir" = /* ]] || target_dir="$PWD/$target_dir"
out_dir="$repo/target/policies"
triple="wasm32-wasip2"

# Without rustup (a distribution's Rust), the target must come with the toolchain; cargo
# says so clearly if it does not.
if command -v rustup >/dev/null && ! rustup target list --installed | grep -x "$triple" >/dev/null; then
    echo "installing the $triple target" >&2
    rustup target add "$triple" >&2
fi

# From inside policies/: cargo reads policies/.cargo/config.toml (the guest stack size) only
# when run there, whatever the manifest path says.
(cd "$repo/policies" && CARGO_TARGET_DIR="$target_dir" cargo build --quiet --release --target "$triple" --manifest-path "$manifest")

mkdir -p "$out_dir"
built=0
# Every crate in a folder of policies/ (rust/: the examples; hostile/: the host's test
# fixtures), named after its package.
for crate_manifest in "$repo"/policies/*/*/Cargo.toml; do
    [[ -f "$crate_manifest" ]] || continue
    name="$(sed -n 's/^name *= *"\([^"]*\)".*/\1/p' "$crate_manifest" | head -n 1)"
    if [[ -z "$name" ]]; then
        echo "error: no package name in $crate_manifest" >&2
        exit 1
    fi
    # Cargo names the artifact after the crate with dashes turned into underscores.
    artifact="$target_dir/$triple/release/${name//-/_}.wasm"
    if [[ ! -f "$artifact" ]]; then
        echo "error: $name built no component at $artifact" >&2
        exit 1
    fi
    # An unchanged component is left alone: a new modification time would make every
    # running `portcullis serve` that watches it reload (tests run beside each other).
    if cmp -s "$artifact" "$out_dir/$name.wasm"; then
        built=$((built + 1))
        continue
    fi
    # Copy, then rename: test binaries run this script concurrently and must never load a
    # half-written component.
    tmp="$out_dir/.$name.wasm.$$"
    cp "$artifact" "$tmp"
    mv -f "$tmp" "$out_dir/$name.wasm"
    printf '%-48s %8d bytes\n' "target/policies/$name.wasm" "$(wc -c < "$out_dir/$name.wasm" | tr -d " ")"
    built=$((built + 1))
done

if [[ "$built" -eq 0 ]]; then
    echo "error: no policy crates found under $repo/policies" >&2
    exit 1
fi
