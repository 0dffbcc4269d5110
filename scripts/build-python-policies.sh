#!/usr/bin/env bash
# Builds the Python policies (policies/python/*) into WebAssembly components with
# componentize-py.
#
#   scripts/build-python-policies.sh           # build every policy
#   scripts/build-python-policies.sh --test    # run the SDK's and the policies' unit tests
#                                              # natively first, then build
#
# Each policy folder (one with a pyproject.toml) becomes
# <repo>/target/policies/python-<name>.wasm, written next to its final name and renamed
# into place, so a test or a server never loads a half-written component. One line per
# component with its size and build time.
#
# componentize-py comes from PyPI: the version below is installed into
# <repo>/target/python-venv when that venv does not have it (set COMPONENTIZE_PY to use a
# componentize-py command of your own instead). It needs python3 with the venv module and
# network access to PyPI the first time; afterwards builds are offline.
#
# The steps per policy (a WIT world with only the capabilities the policy's pyproject.toml
# lists, staging, `componentize-py --stub-wasi`) are in guest-sdk/python/portcullis_build.py.
set -euo pipefail

COMPONENTIZE_PY_VERSION="0.25.1"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out_dir="$repo/target/policies"
venv="$repo/target/python-venv"
builder="$repo/guest-sdk/python/portcullis_build.py"

run_tests=0
for arg in "$@"; do
    case "$arg" in
        --test) run_tests=1 ;;
        -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

if ! command -v python3 >/dev/null; then
    echo "error: python3 is not installed; Python policies need it (and pip) to install and run componentize-py" >&2
    echo "       e.g. apt-get install python3 python3-venv python3-pip" >&2
    exit 1
fi

python="$venv/bin/python3"
if [[ -n "${COMPONENTIZE_PY:-}" ]]; then
    componentize_py="$COMPONENTIZE_PY"
    python="python3"
else
    componentize_py="$venv/bin/componentize-py"
    installed="$("$componentize_py" --version 2>/dev/null | awk '{print $2}' || true)"
    if [[ "$installed" != "$COMPONENTIZE_PY_VERSION" ]]; then
        if [[ ! -x "$python" ]]; then
            echo "creating $venv" >&2
            if ! python3 -m venv "$venv" >&2; then
                echo "error: python3 cannot create a virtual environment; install its venv module (apt-get install python3-venv)" >&2
                exit 1
            fi
        fi
        if ! "$python" -m pip --version >/dev/null 2>&1; then
            echo "error: pip is missing in $venv; install python3-pip (or python3-venv with ensurepip) and remove $venv" >&2
            exit 1
        fi
        echo "installing componentize-py $COMPONENTIZE_PY_VERSION into $venv" >&2
        "$python" -m pip install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
    fi
fi

if [[ "$run_tests" -eq 1 ]]; then
    # The bindings of the full `policy` world, for native imports of `wit_world`.
    "$python" "$builder" --componentize-py "$componentize_py" bindings "$repo/target/python-bindings"
    pythonpath="$repo/guest-sdk/python:$repo/target/python-bindings"
    echo "testing guest-sdk/python" >&2
    PYTHONPATH="$pythonpath" "$python" -m unittest discover -q -s "$repo/guest-sdk/python/tests" -t "$repo/guest-sdk/python/tests"
    for project in "$repo"/policies/python/*/pyproject.toml; do
        [[ -f "$project" ]] || continue
        dir="$(dirname "$project")"
        echo "testing ${dir#"$repo"/}" >&2
        (cd "$dir" && PYTHONPATH="$dir:$pythonpath" "$python" -m unittest discover -q -s "$dir" -t "$dir")
    done
fi

mkdir -p "$out_dir"
built=0
for project in "$repo"/policies/python/*/pyproject.toml; do
    [[ -f "$project" ]] || continue
    dir="$(dirname "$project")"
    name="$(basename "$dir")"
    out="$out_dir/python-$name.wasm"
    start=$(date +%s.%N)
    # The builder writes next to $out and renames into place.
    "$python" "$builder" --componentize-py "$componentize_py" build "$dir" "$out"
    seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    printf '%-48s %9d bytes  %5s s\n' "target/policies/python-$name.wasm" "$(wc -c < "$out" | tr -d " ")" "$seconds"
    built=$((built + 1))
done

if [[ "$built" -eq 0 ]]; then
    echo "error: no Python policies (folders with a pyproject.toml) under $repo/policies/python" >&2
    exit 1
fi
