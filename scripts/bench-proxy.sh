#!/usr/bin/env bash
# The proxy path against nginx, measured with wrk on loopback in one run, for one or more
# `portcullis` binaries (e.g. before and after a change):
#
#   scripts/bench-proxy.sh target/release/portcullis [LABEL=/path/to/other/portcullis ...]
#
# A binary may be given as LABEL=PATH to name its rows. Against the same upstream (nginx
# serving a small JSON file, plaintext and TLS), each round measures, in turn:
#
#   direct             wrk straight to the upstream (the baseline for "added")
#   nginx proxy_pass   an nginx reverse proxy that decides nothing (the anchor)
#   LABEL proxy        `portcullis serve` [server.proxy]: scopes + agent-guard on the route,
#                      an API key, the audit log on (to a file)
#   LABEL proxy, nothing to decide
#                      the same door with no identity, no policy on the path, no audit
#   floor              a hyper pass-through proxy (no gate, no policies, no audit), built from
#                      examples/bench_passthrough.rs: what this transport costs by itself
#   LABEL auth_request nginx `auth_request` -> portcullis [server.forward_auth], same rules
#   direct TLS, nginx TLS, LABEL TLS
#                      the same with TLS on both sides: wrk -> https listener, https upstream
#                      (certificates made with openssl in the temporary folder, verified)
#
# at 1 connection and at 16: p50, p99 and requests/s. Then, over the rounds (median), the
# issue-18 targets as same-run ratios: added p50 over direct at 1 connection within 1.3x of
# nginx proxy_pass's, p99 within 1.5x of nginx proxy_pass's, requests/s at 16 connections at
# least 0.8x nginx proxy_pass's (plaintext against nginx, TLS against nginx TLS).
#
# Both proxies get the machine's cores: nginx `worker_processes auto`, portcullis its default
# runtime (one worker thread per core); the upstream nginx has one worker. Keep-alive on every
# hop (nginx `upstream { keepalive 64; }` to the upstream and to forward-auth).
#
# Environment: ROUNDS (default 2), DURATION (s per wrk run, default 10) after a WARMUP
# (default 2 s) that is not counted, ROWS (default "plain auth tls"; any subset), FLOOR (the
# pass-through binary; default: examples/bench_passthrough next to the first binary, skipped
# when absent: `cargo build --release --example bench_passthrough`), POLICIES (the folder with
# scopes.wasm and agent-guard.wasm; default target/policies, from scripts/build-policies.sh:
# a binary refuses components built against another contract version).
# Every response must be a 2xx: a run with any other answer (a denial is faster than a pass)
# stops the script. Loopback only. Needs nginx, wrk, openssl, python3.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ $# -ge 1 ]] || { echo "usage: $0 [LABEL=]PORTCULLIS_BINARY [MORE...]" >&2; exit 2; }
for tool in nginx wrk openssl python3; do
    command -v "$tool" >/dev/null || [[ -x "/usr/sbin/$tool" ]] || { echo "$tool is missing (apt-get install nginx-light wrk openssl python3)" >&2; exit 1; }
done
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
rounds="${ROUNDS:-2}"
duration="${DURATION:-10}"
warmup="${WARMUP:-2}"
policies="${POLICIES:-$repo/target/policies}"
rows=" ${ROWS:-plain auth tls} "
work="$(mktemp -d)"
chmod 755 "$work" # nginx workers (nobody) read the upstream's file
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
want() { [[ "$rows" == *" $1 "* ]]; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 600); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; echo "nothing listens on $1" >&2; return 1; }
wait_file() { for _ in $(seq 1200); do [[ -s "$1" ]] && return; sleep 0.05; done; echo "$1 never appeared" >&2; return 1; }
ready_port() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]].rsplit(":",1)[1])' "$1" "$2"; }

# Certificates: a CA, and a server certificate for localhost and 127.0.0.1 (P-256).
tls_dir="$work/tls"
mkdir -p "$tls_dir"
(
    cd "$tls_dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
        -days 2 -subj "/CN=bench CA" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
        -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' >ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
        -extfile ext.cnf 2>/dev/null
)

# `start_nginx NAME WORKERS SERVERS` runs an nginx with these `http` contents from $work/NAME.
start_nginx() {
    local dir="$work/$1"
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
daemon off; master_process on; worker_processes $2; pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/body; proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi; uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
$3
}
EOF
    "$nginx_bin" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" &
    pids+=($!)
}

# The upstream: one small JSON answer, plaintext and TLS (HTTP/1.1 on both, for either proxy).
up_port="$(free_port)"
up_tls_port="$(free_port)"
mkdir -p "$work/upstream"
printf '{"id":"inv-1","amount":120.5,"currency":"EUR","status":"open"}\n' >"$work/upstream/invoice.json"
start_nginx upstream 1 "
    server {
        listen 127.0.0.1:$up_port;
        listen 127.0.0.1:$up_tls_port ssl;
        ssl_certificate $tls_dir/server.pem; ssl_certificate_key $tls_dir/server.key;
        root $work/upstream;
        location / { default_type application/json; try_files /invoice.json =404; }
    }"
wait_port "$up_port" || { cat "$work/upstream/error.log" >&2; exit 1; }

key="bench-key-0000000000000001"
key_sha="$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)"

# The portcullis config: two policies on the route, an API key, the audit log on; `$1` the
# doors.
portcullis_config() {
    cat <<EOF
[routing]
unmatched = "deny"

[[identity.api_keys]]
name = "bench"
sha256 = "$key_sha"
kind = "user"
id = "alice"
scopes = ["invoices:read"]

[policies.scopes]
module = "$policies/scopes.wasm"
settings = { default = "deny", rules = [{ methods = ["GET"], path = "/invoices/**", scopes = ["invoices:read"] }] }

[policies.agent-guard]
module = "$policies/agent-guard.wasm"
settings = { approver_group = "ops" }

[[routes]]
name = "invoices"
paths = ["/invoices/**"]
policies = ["scopes", "agent-guard"]

[audit]
path = "audit.jsonl"

$1
EOF
}

# Every binary: one serve with the proxy and forward-auth doors, one with the proxy over TLS.
labels=() proxy_ports=() fa_ports=() tls_ports=() bare_ports=()
index=0
for spec in "$@"; do
    index=$((index + 1))
    if [[ "$spec" == *=* ]]; then label="${spec%%=*}" binary="${spec#*=}"; else label="$spec" binary="$spec"; fi
    [[ -x "$binary" ]] || { echo "$binary is not an executable" >&2; exit 1; }
    for mode in plain tls; do
        dir="$work/portcullis-$index-$mode"
        mkdir -p "$dir"
        if [[ "$mode" == plain ]]; then
            doors="[server.proxy]
listen = \"127.0.0.1:0\"
upstream = \"http://127.0.0.1:$up_port\"

[server.forward_auth]
listen = \"127.0.0.1:0\""
        else
            doors="[server.proxy]
listen = \"127.0.0.1:0\"
upstream = \"https://127.0.0.1:$up_tls_port\"

[server.proxy.tls]
cert_file = \"$tls_dir/server.pem\"
key_file = \"$tls_dir/server.key\"

[server.proxy.upstream_tls]
ca_file = \"$tls_dir/ca.pem\"
server_name = \"localhost\""
        fi
        portcullis_config "$doors" >"$dir/portcullis.toml"
        "$binary" serve --config "$dir/portcullis.toml" --ready-file "$dir/ready.json" 2>"$dir/stderr.log" &
        pids+=($!)
    done
    # The same door with nothing to decide: no identity, no policy on the path, no audit.
    dir="$work/portcullis-$index-bare"
    mkdir -p "$dir"
    cat >"$dir/portcullis.toml" <<EOF
[routing]
unmatched = "allow"

# A config needs a policy and a route: this one is never asked for.
[policies.scopes]
module = "$policies/scopes.wasm"
settings = { default = "deny", rules = [] }

[[routes]]
name = "unused"
paths = ["/unused/**"]
policies = ["scopes"]

[server.proxy]
listen = "127.0.0.1:0"
upstream = "http://127.0.0.1:$up_port"
EOF
    "$binary" serve --config "$dir/portcullis.toml" --ready-file "$dir/ready.json" 2>"$dir/stderr.log" &
    pids+=($!)
    wait_file "$work/portcullis-$index-bare/ready.json" || { cat "$work/portcullis-$index-bare/stderr.log" >&2; exit 1; }
    bare_ports+=("$(ready_port "$work/portcullis-$index-bare/ready.json" proxy)")
    wait_file "$work/portcullis-$index-plain/ready.json" || { cat "$work/portcullis-$index-plain/stderr.log" >&2; exit 1; }
    wait_file "$work/portcullis-$index-tls/ready.json" || { cat "$work/portcullis-$index-tls/stderr.log" >&2; exit 1; }
    labels+=("$label")
    proxy_ports+=("$(ready_port "$work/portcullis-$index-plain/ready.json" proxy)")
    fa_ports+=("$(ready_port "$work/portcullis-$index-plain/ready.json" forward_auth)")
    tls_ports+=("$(ready_port "$work/portcullis-$index-tls/ready.json" proxy)")
done

# The pass-through floor.
first="${1#*=}"
floor="${FLOOR:-$(dirname "$first")/examples/bench_passthrough}"
floor_port=""
if want plain && [[ -x "$floor" ]]; then
    floor_port="$(free_port)"
    "$floor" "127.0.0.1:$floor_port" "http://127.0.0.1:$up_port" 2>"$work/floor.log" &
    pids+=($!)
    wait_port "$floor_port" || { cat "$work/floor.log" >&2; exit 1; }
elif want plain; then
    echo "(no pass-through floor: $floor is missing; cargo build --release --example bench_passthrough)" >&2
fi

# The anchor nginx: proxy_pass, proxy_pass over TLS, and auth_request to each binary's
# forward-auth door (the snippet docs/front-doors.md shows, with keep-alive to both).
nginx_port="$(free_port)"
nginx_tls_port="$(free_port)"
servers="
    upstream up { server 127.0.0.1:$up_port; keepalive 64; }
    upstream up_tls { server 127.0.0.1:$up_tls_port; keepalive 64; }
    server {
        listen 127.0.0.1:$nginx_port;
        location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
    }
    server {
        listen 127.0.0.1:$nginx_tls_port ssl;
        ssl_certificate $tls_dir/server.pem; ssl_certificate_key $tls_dir/server.key;
        location / {
            proxy_pass https://up_tls; proxy_http_version 1.1; proxy_set_header Connection \"\";
            proxy_ssl_verify on; proxy_ssl_trusted_certificate $tls_dir/ca.pem; proxy_ssl_name localhost;
            proxy_ssl_server_name on; proxy_ssl_session_reuse on;
        }
    }"
auth_ports=()
for i in "${!labels[@]}"; do
    port="$(free_port)"
    auth_ports+=("$port")
    servers+="
    upstream fa$i { server 127.0.0.1:${fa_ports[$i]}; keepalive 64; }
    server {
        listen 127.0.0.1:$port;
        location / {
            auth_request /_portcullis;
            auth_request_set \$portcullis_principal \$upstream_http_x_portcullis_principal;
            auth_request_set \$portcullis_request_id \$upstream_http_x_request_id;
            proxy_set_header X-Portcullis-Principal \$portcullis_principal;
            proxy_set_header X-Request-Id \$portcullis_request_id;
            proxy_set_header Portcullis-Approval \"\";
            proxy_set_header Host \$host;
            proxy_http_version 1.1; proxy_set_header Connection \"\";
            proxy_pass http://up;
        }
        location = /_portcullis {
            internal;
            proxy_pass http://fa$i;
            proxy_pass_request_body off;
            proxy_http_version 1.1; proxy_set_header Connection \"\";
            proxy_set_header Content-Length \"\";
            proxy_set_header X-Original-URI \$request_uri;
            proxy_set_header X-Original-Method \$request_method;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-For \$remote_addr;
        }
    }"
done
start_nginx anchor auto "$servers"
wait_port "$nginx_port" || { cat "$work/anchor/error.log" >&2; exit 1; }

# `measure URL CONNECTIONS` prints "p50_us p99_us rps", or "failed".
measure() {
    local out threads=$(( $2 > 1 ? 2 : 1 ))
    wrk -t"$threads" -c"$2" -d"${warmup}s" -H "x-api-key: $key" "$1" >/dev/null
    out="$(wrk -t"$threads" -c"$2" -d"${duration}s" --latency -H "x-api-key: $key" "$1")"
    if grep -q -e 'Non-2xx' -e 'Socket errors' <<<"$out"; then
        echo "$1 with $2 connections: not every request got a 2xx answer:" >&2
        echo "$out" >&2
        echo failed
        return
    fi
    # wrk prints 123.45us, 1.23ms or 1.23s.
    python3 - "$(awk '/^ +50%/ {print $2}' <<<"$out")" "$(awk '/^ +99%/ {print $2}' <<<"$out")" \
        "$(awk '/^Requests\/sec/ {print $2}' <<<"$out")" <<'PY'
import sys
def us(v):
    for unit, f in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if v.endswith(unit):
            return round(float(v[: -len(unit)]) * f)
print(us(sys.argv[1]), us(sys.argv[2]), round(float(sys.argv[3])))
PY
}

results="$work/results.tsv" # round, row, connections, p50, p99, rps
row() { # ROW_NAME URL
    local c m
    for c in 1 16; do
        m="$(measure "$2" "$c")"
        [[ "$m" != failed ]] || exit 1
        read -r p50 p99 rps <<<"$m"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$1" "$c" "$p50" "$p99" "$rps" >>"$results"
        printf '%5s  %-28s %4s  %8s µs %8s µs %10s\n' "$round" "$1" "$c" "$p50" "$p99" "$rps"
    done
}

echo "machine: $(nproc) cores, $(uname -srm), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "round  what                         conn       p50        p99      req/s"
for round in $(seq "$rounds"); do
    if want plain; then
        row "direct" "http://127.0.0.1:$up_port/invoices/1"
        row "nginx proxy_pass" "http://127.0.0.1:$nginx_port/invoices/1"
        for i in "${!labels[@]}"; do row "${labels[$i]} proxy" "http://127.0.0.1:${proxy_ports[$i]}/invoices/1"; done
        for i in "${!labels[@]}"; do row "${labels[$i]} proxy, nothing to decide" "http://127.0.0.1:${bare_ports[$i]}/invoices/1"; done
        [[ -z "$floor_port" ]] || row "floor (hyper pass-through)" "http://127.0.0.1:$floor_port/invoices/1"
    fi
    if want auth; then
        want plain || row "direct" "http://127.0.0.1:$up_port/invoices/1"
        for i in "${!labels[@]}"; do row "${labels[$i]} auth_request" "http://127.0.0.1:${auth_ports[$i]}/invoices/1"; done
    fi
    if want tls; then
        row "direct TLS" "https://127.0.0.1:$up_tls_port/invoices/1"
        row "nginx proxy_pass TLS" "https://127.0.0.1:$nginx_tls_port/invoices/1"
        for i in "${!labels[@]}"; do row "${labels[$i]} proxy TLS" "https://127.0.0.1:${tls_ports[$i]}/invoices/1"; done
    fi
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

# The medians over the rounds, and the targets.
python3 - "$results" "${labels[@]}" <<'PY'
import statistics, sys
from collections import defaultdict
rows = defaultdict(list)
order = []
for line in open(sys.argv[1]):
    _, what, conn, p50, p99, rps = line.rstrip("\n").split("\t")
    if (what, conn) not in rows:
        order.append((what, conn))
    rows[(what, conn)].append((int(p50), int(p99), int(rps)))
med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) for k, v in rows.items()}
def base(what):
    return "direct TLS" if what.endswith("TLS") else "direct"
print("\nmedian over the rounds:")
print("| | p50, 1 conn | added p50 | p99, 1 conn | req/s, 1 conn | p50, 16 conn | p99, 16 conn | req/s, 16 conn |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
names = []
for what, _ in order:
    if what not in names:
        names.append(what)
for what in names:
    one, many = med.get((what, "1")), med.get((what, "16"))
    if not one or not many:
        continue
    b = med.get((base(what), "1"))
    added = "" if what.startswith("direct") or not b else f"+{one[0] - b[0]:.0f} µs"
    print(f"| {what} | {one[0]:.0f} µs | {added} | {one[1]:.0f} µs | {one[2]:,.0f} | {many[0]:.0f} µs | {many[1]:,.0f} µs | {many[2]:,.0f} |")
def targets(row, anchor, direct):
    need = [(row, "1"), (row, "16"), (anchor, "1"), (anchor, "16"), (direct, "1")]
    if any(k not in med for k in need):
        return
    added, anchor_added = med[(row, "1")][0] - med[(direct, "1")][0], med[(anchor, "1")][0] - med[(direct, "1")][0]
    p99, anchor_p99 = med[(row, "1")][1], med[(anchor, "1")][1]
    p99m, anchor_p99m = med[(row, "16")][1], med[(anchor, "16")][1]
    rps, anchor_rps = med[(row, "16")][2], med[(anchor, "16")][2]
    def verdict(ok):
        return "met" if ok else "NOT met"
    r1 = added / anchor_added if anchor_added > 0 else float("inf")
    print(f"{row} against {anchor}:")
    print(f"  added p50 (1 conn) {added:.0f} µs / {anchor_added:.0f} µs = {r1:.2f}x (target <= 1.3x: {verdict(r1 <= 1.3)})")
    print(f"  p99 (1 conn) {p99:.0f} µs / {anchor_p99:.0f} µs = {p99 / anchor_p99:.2f}x (target <= 1.5x: {verdict(p99 / anchor_p99 <= 1.5)});"
          f" at 16 conn {p99m:.0f} / {anchor_p99m:.0f} µs = {p99m / anchor_p99m:.2f}x")
    print(f"  req/s (16 conn) {rps:.0f} / {anchor_rps:.0f} = {rps / anchor_rps:.2f}x (target >= 0.8x: {verdict(rps / anchor_rps >= 0.8)})")
print("\ntargets (issue 18), same-run ratios of the medians:")
for label in sys.argv[2:]:
    targets(f"{label} proxy", "nginx proxy_pass", "direct")
    targets(f"{label} auth_request", "nginx proxy_pass", "direct")
    targets(f"{label} proxy TLS", "nginx proxy_pass TLS", "direct TLS")
targets("floor (hyper pass-through)", "nginx proxy_pass", "direct")
PY
