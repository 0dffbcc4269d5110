#!/usr/bin/env bash
# The reverse proxy's cost over a direct call, measured with wrk on loopback, for one or
# more `portcullis` binaries in the same run (e.g. before and after a change):
#
#   scripts/bench-proxy.sh target/release/portcullis [/path/to/other/portcullis ...]
#
# A binary may be given as LABEL=PATH (e.g. before=/tmp/portcullis-old) to name its rows.
# A small JSON file served by nginx is the upstream. Each binary runs `portcullis serve`
# with the proxy in front of it: `scopes` and `agent-guard` on the route, an API key, the
# audit log on (to a file). For each round (ROUNDS, default 2) and each binary, in turn:
# 1 connection for the p50 latency, then 16 connections for requests per second; the
# direct call to nginx is measured the same way in every round, so each figure has its
# baseline from the same minutes. DURATION (default 10 s) per wrk run, after a 2 s warm-up
# run that is not counted. Every response must be a 2xx: a run with any other answer (a
# denial is faster than a pass) stops the script. Loopback only.
# Needs nginx and wrk (Debian: nginx-light, wrk).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ $# -ge 1 ]] || { echo "usage: $0 PORTCULLIS_BINARY [MORE_BINARIES...]" >&2; exit 2; }
for tool in nginx wrk; do
    command -v "$tool" >/dev/null || [[ -x "/usr/sbin/$tool" ]] || { echo "$tool is missing (apt-get install nginx-light wrk)" >&2; exit 1; }
done
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
rounds="${ROUNDS:-2}"
duration="${DURATION:-10}"
work="$(mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 600); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; echo "nothing listens on $1" >&2; return 1; }

# The upstream: nginx with one small JSON answer.
up_port="$(free_port)"
mkdir -p "$work/nginx"
printf '{"id":"inv-1","amount":120.5,"currency":"EUR","status":"open"}\n' >"$work/nginx/invoice.json"
cat >"$work/nginx/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body; proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi; uwsgi_temp_path $work/nginx/uwsgi; scgi_temp_path $work/nginx/scgi;
    server {
        listen 127.0.0.1:$up_port;
        root $work/nginx;
        location / { default_type application/json; try_files /invoice.json =404; }
    }
}
EOF
"$nginx_bin" -p "$work/nginx/" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
pids+=($!)
wait_port "$up_port" || { cat "$work/nginx/error.log" >&2; exit 1; }

key="bench-key-0000000000000001"
key_sha="$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)"
# `run URL CONNECTIONS VAR` sets VAR to "p50_us rps", or stops the script.
run() { local result; result="$(measure "$1" "$2")"; [[ "$result" != failed ]] || exit 1; printf -v "$3" '%s' "$result"; }
measure() { # URL CONNECTIONS -> "p50_us rps"
    local out
    wrk -t1 -c"$2" -d2s -H "x-api-key: $key" "$1" >/dev/null
    out="$(wrk -t"$(( $2 > 1 ? 2 : 1 ))" -c"$2" -d"${duration}s" --latency -H "x-api-key: $key" "$1")"
    if grep -q -e 'Non-2xx' -e 'Socket errors' <<<"$out"; then
        echo "$1 with $2 connections: not every request got a 2xx answer:" >&2
        echo "$out" >&2
        echo failed
        return
    fi
    local p50 rps
    p50="$(awk '/^ +50%/ {print $2}' <<<"$out")"
    rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
    # wrk prints 123.45us, 1.23ms or 1.23s.
    python3 -c 'import sys; v=sys.argv[1]; f={"us":1,"ms":1e3,"s":1e6}; u=next(x for x in ("us","ms","s") if v.endswith(x)); print(round(float(v[:-len(u)])*f[u]), sys.argv[2])' "$p50" "$rps"
}

echo "round  what                 p50 (1 conn)   added p50   req/s (16 conn)"
for round in $(seq "$rounds"); do
    run "http://127.0.0.1:$up_port/invoices/1" 1 one; read -r direct_p50 _ <<<"$one"
    run "http://127.0.0.1:$up_port/invoices/1" 16 many; read -r _ direct_rps <<<"$many"
    printf '%5s  %-20s %10s µs  %9s   %15s\n' "$round" "direct to nginx" "$direct_p50" "" "$direct_rps"
    index=0
    for spec in "$@"; do
        index=$((index + 1))
        if [[ "$spec" == *=* ]]; then label="${spec%%=*}" binary="${spec#*=}"; else label="$spec" binary="$spec"; fi
        port="$(free_port)"
        dir="$work/portcullis-$round-$index"
        mkdir -p "$dir"
        cat >"$dir/portcullis.toml" <<EOF
[routing]
unmatched = "deny"

[[identity.api_keys]]
name = "bench"
sha256 = "$key_sha"
kind = "user"
id = "alice"
scopes = ["invoices:read"]

[policies.scopes]
module = "$repo/target/policies/scopes.wasm"
settings = { default = "deny", rules = [{ methods = ["GET"], path = "/invoices/**", scopes = ["invoices:read"] }] }

[policies.agent-guard]
module = "$repo/target/policies/agent-guard.wasm"
settings = { approver_group = "ops" }

[[routes]]
name = "invoices"
paths = ["/invoices/**"]
policies = ["scopes", "agent-guard"]

[server.proxy]
listen = "127.0.0.1:$port"
upstream = "http://127.0.0.1:$up_port"

[audit]
path = "$dir/audit.jsonl"
EOF
        "$binary" serve --config "$dir/portcullis.toml" 2>"$dir/stderr.log" &
        pids+=($!)
        wait_port "$port" || { cat "$dir/stderr.log" >&2; exit 1; }
        run "http://127.0.0.1:$port/invoices/1" 1 one; read -r p50 _ <<<"$one"
        run "http://127.0.0.1:$port/invoices/1" 16 many; read -r _ rps <<<"$many"
        kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
        printf '%5s  %-20s %10s µs  %+7d µs  %15s\n' "$round" "$label" "$p50" "$((p50 - direct_p50))" "$rps"
    done
done
