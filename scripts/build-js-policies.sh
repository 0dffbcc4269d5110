#!/usr/bin/env bash
# Builds the JavaScript policies (policies/js/*) into WebAssembly components with
# componentize-js.
#
#   scripts/build-js-policies.sh           # build every policy
#   scripts/build-js-policies.sh --test    # run the SDK's and the policies' unit tests
#                                          # natively (node --test) first, then build
#
# Each policy folder (one with a package.json) becomes
# <repo>/target/policies/js-<name>.wasm, written next to its final name and renamed into
# place, so a test or a server never loads a half-written component. One line per
# component with its size and build time.
#
# componentize-js comes from npm: the exact version pinned in guest-sdk/js/package.json is
# installed into <repo>/target/js-tools when that folder does not have it (set
# COMPONENTIZE_JS to the folder of a componentize-js package of your own instead). It needs
# node (18 or later) and npm, and network access to npm the first time; afterwards builds
# are offline.
#
# The steps per policy (a WIT world with only the capabilities the policy's package.json
# lists, staging, componentize-js with every WASI feature disabled) are in
# guest-sdk/js/build.mjs.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out_dir="$repo/target/policies"
tools="$repo/target/js-tools"
builder="$repo/guest-sdk/js/build.mjs"

run_tests=0
for arg in "$@"; do
    case "$arg" in
        --test) run_tests=1 ;;
        -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

if ! command -v node >/dev/null; then
    echo "error: node is not installed; JavaScript policies need Node.js 18 or later (and npm) to run componentize-js" >&2
    echo "       e.g. apt-get install nodejs npm, or https://nodejs.org" >&2
    exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [[ "$node_major" -lt 18 ]]; then
    echo "error: node $(node --version) is too old; componentize-js needs Node.js 18 or later" >&2
    exit 1
fi

version="$(node -p 'require(process.argv[1]).devDependencies["@bytecodealliance/componentize-js"]' "$repo/guest-sdk/js/package.json")"
if [[ -z "${COMPONENTIZE_JS:-}" ]]; then
    installed_pkg="$tools/node_modules/@bytecodealliance/componentize-js/package.json"
    installed="$( [[ -f "$installed_pkg" ]] && node -p 'require(process.argv[1]).version' "$installed_pkg" || true)"
    if [[ "$installed" != "$version" ]]; then
        if ! command -v npm >/dev/null; then
            echo "error: npm is not installed; it is needed once to install componentize-js $version into $tools" >&2
            echo "       e.g. apt-get install npm (or set COMPONENTIZE_JS to an installed componentize-js package folder)" >&2
            exit 1
        fi
        echo "installing componentize-js $version into $tools" >&2
        mkdir -p "$tools"
        printf '{"name": "portcullis-js-tools", "private": true, "dependencies": {"@bytecodealliance/componentize-js": "%s"}}\n' "$version" > "$tools/package.json"
        (cd "$tools" && npm install --no-audit --no-fund --loglevel=error >&2)
    fi
fi

if [[ "$run_tests" -eq 1 ]]; then
    echo "testing guest-sdk/js" >&2
    (cd "$repo/guest-sdk/js" && node --test tests/ >/dev/null) || { echo "error: guest-sdk/js tests failed (run: cd guest-sdk/js && node --test tests/)" >&2; exit 1; }
    for project in "$repo"/policies/js/*/package.json; do
        [[ -f "$project" ]] || continue
        dir="$(dirname "$project")"
        echo "testing ${dir#"$repo"/}" >&2
        (cd "$dir" && node --test >/dev/null) || { echo "error: tests failed in ${dir#"$repo"/} (run: cd ${dir#"$repo"/} && node --test)" >&2; exit 1; }
    done
fi

mkdir -p "$out_dir"
built=0
for project in "$repo"/policies/js/*/package.json; do
    [[ -f "$project" ]] || continue
    dir="$(dirname "$project")"
    name="$(basename "$dir")"
    out="$out_dir/js-$name.wasm"
    start=$(date +%s.%N)
    # The builder writes next to $out and renames into place.
    node "$builder" "$dir" "$out"
    seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    printf '%-48s %9d bytes  %5s s\n' "target/policies/js-$name.wasm" "$(wc -c < "$out" | tr -d " ")" "$seconds"
    built=$((built + 1))
done

if [[ "$built" -eq 0 ]]; then
    echo "error: no JavaScript policies (folders with a package.json) under $repo/policies/js" >&2
    exit 1
fi
