#!/usr/bin/env bash
# Load bench: examples/proxy against nginx doing the same job, side by side in one run.
#
#   scripts/proxy-load.sh            # from the repository root (needs root to install packages)
#
# An upstream nginx serves a 1 KiB file on loopback, twice: on one port every request succeeds,
# on the other half the answers are 503 (split_clients on $request_id). In front of each:
#
#   proxy             examples/proxy (release build), its log at WARN, the example's defaults
#   nginx-retter      nginx doing retter's job, which is the proxy's: every request forwarded
#                     (keep-alive upstream), every good answer kept (`proxy_cache_bypass 1`
#                     skips reading the cache, not writing it; the cache is on tmpfs, nginx's
#                     fastest store), and the kept answer served when the upstream fails
#                     (`error_page 5xx` to a location with `proxy_cache_use_stale error timeout
#                     http_500 http_502 http_503 http_504`)
#   nginx-microcache  nginx as a stale-serving cache proxy that also answers from its cache
#                     while the answer is 1 s old or less (`proxy_cache_valid 200 1s`): it
#                     forwards about one request a second, which neither retter nor the proxy do
#   nginx-forward     nginx as a plain keep-alive reverse proxy, no cache, no stale answers:
#                     what forwarding alone costs nginx
#
# All are loaded alike with `ab -k -c $CONCURRENCY -n $REQUESTS`, in $ROUNDS rounds, the order
# of the variants rotating every round; the summary gives medians with min-max. The proxies
# run on CPU $SERVER_CPU, the upstream and ab on CPU $LOAD_CPU (`taskset`), each nginx with one
# worker, so the proxies compare on one core each. Then, if `perf` works, a profile of the
# proxy under the same load tells where its time goes, by crate and by function, and the
# proxy's /metrics shows what its layers did in the half-failing run.
#
# Settings (environment): REQUESTS (20000), CONCURRENCY (16), ROUNDS (5), SERVER_CPU (0),
# LOAD_CPU (1), PORT (18080: the first of nine consecutive ports), PERF (1; 0 skips the
# profile), PROXY_BIN (skip the build and use this binary).
set -euo pipefail

REQUESTS=${REQUESTS:-20000}
CONCURRENCY=${CONCURRENCY:-16}
ROUNDS=${ROUNDS:-5}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${PORT:-18080}
PERF=${PERF:-1}

root=$(cd "$(dirname "$0")/.." && pwd)

if ! command -v ab >/dev/null || ! { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; }; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "proxy-load: needs nginx-light and apache2-utils; run as root to install them" >&2
        exit 1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light apache2-utils
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [ -z "${PROXY_BIN:-}" ]; then
    (cd "$root" && cargo build --release --example proxy)
    PROXY_BIN="$root/target/release/examples/proxy"
fi

work=$(mktemp -d /tmp/proxy-load.XXXXXX)
# nginx-retter writes every good answer to its cache: on tmpfs when there is one, as the proxy
# keeps its answers in memory.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    stale_store=$(mktemp -d /dev/shm/proxy-load.XXXXXX)
else
    stale_store=$work/stale
fi
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$work" "$stale_store"
}
trap cleanup EXIT

up_good=$PORT
up_flaky=$((PORT + 1))
nginx_cache_good=$((PORT + 2))
nginx_cache_flaky=$((PORT + 3))
nginx_forward_good=$((PORT + 4))
proxy_good=$((PORT + 5))
proxy_flaky=$((PORT + 6))
nginx_retter_good=$((PORT + 7))
nginx_retter_flaky=$((PORT + 8))

mkdir -p "$work/www" "$work/upstream" "$work/front/cache"
head -c 1024 /dev/zero | tr '\0' 'x' >"$work/www/file.bin"

# Runs as root only when started as root (nginx refuses `user` otherwise).
user_line=""
if [ "$(id -u)" -eq 0 ]; then user_line="user root;"; fi

nginx_conf() { # $1: directory; stdin: the http block's contents
    cat <<EOF
$user_line
worker_processes 1;
daemon off;
error_log $1/error.log warn;
pid $1/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $1/body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
    keepalive_requests 1000000;
$(cat)
}
EOF
}

nginx_conf "$work/upstream" >"$work/upstream/nginx.conf" <<EOF
    split_clients "\${request_id}" \$fail { 50% 1; * 0; }
    server {
        listen 127.0.0.1:$up_good;
        root $work/www;
    }
    server {
        listen 127.0.0.1:$up_flaky;
        root $work/www;
        location / {
            if (\$fail) { return 503; }
        }
    }
EOF

nginx_conf "$work/front" >"$work/front/nginx.conf" <<EOF
    proxy_cache_path $work/front/cache keys_zone=stale:10m;
    proxy_cache_path $stale_store keys_zone=retter:10m use_temp_path=off;
    upstream good { server 127.0.0.1:$up_good; keepalive 32; }
    upstream flaky { server 127.0.0.1:$up_flaky; keepalive 32; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    server {
        listen 127.0.0.1:$nginx_cache_good;
        location / {
            proxy_pass http://good;
            proxy_cache stale;
            proxy_cache_valid 200 1s;
            proxy_cache_use_stale error timeout http_500 http_502 http_503 http_504;
        }
    }
    server {
        listen 127.0.0.1:$nginx_cache_flaky;
        location / {
            proxy_pass http://flaky;
            proxy_cache stale;
            proxy_cache_valid 200 1s;
            proxy_cache_use_stale error timeout http_500 http_502 http_503 http_504;
        }
    }
    server {
        listen 127.0.0.1:$nginx_forward_good;
        location / { proxy_pass http://good; }
    }
$(for pair in "good $nginx_retter_good" "flaky $nginx_retter_flaky"; do
    read -r up port <<<"$pair"
    cat <<SERVER
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://$up;
            proxy_cache retter;
            proxy_cache_bypass 1;
            proxy_cache_valid 200 1h;
            proxy_intercept_errors on;
            error_page 500 502 503 504 = @stale;
        }
        location @stale {
            proxy_pass http://$up;
            proxy_cache retter;
            proxy_cache_valid 200 1h;
            proxy_cache_use_stale error timeout http_500 http_502 http_503 http_504;
        }
    }
SERVER
done)
EOF

taskset -c "$LOAD_CPU" "$NGINX" -p "$work/upstream" -c "$work/upstream/nginx.conf" &
pids+=($!)
taskset -c "$SERVER_CPU" "$NGINX" -p "$work/front" -c "$work/front/nginx.conf" &
pids+=($!)

start_proxy() { # $1: listen port, $2: upstream port, $3: log file
    RUST_LOG=warn RETTER_SERVER_LISTEN="127.0.0.1:$1" \
        RETTER_BACKEND_BASEURL="http://127.0.0.1:$2" \
        taskset -c "$SERVER_CPU" "$PROXY_BIN" >"$3" 2>&1 &
    pids+=($!)
}
start_proxy "$proxy_good" "$up_good" "$work/proxy-good.log"
proxy_good_pid=${pids[-1]}
start_proxy "$proxy_flaky" "$up_flaky" "$work/proxy-flaky.log"

wait_for() { # $1: port; at most 10 s
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "proxy-load: nothing listens on port $1" >&2
    exit 1
}
for p in $up_good $up_flaky $nginx_cache_good $nginx_cache_flaky $nginx_forward_good \
    $nginx_retter_good $nginx_retter_flaky $proxy_good $proxy_flaky; do
    wait_for "$p"
done

# name scenario port
variants=(
    "proxy good $proxy_good"
    "nginx-retter good $nginx_retter_good"
    "nginx-microcache good $nginx_cache_good"
    "nginx-forward good $nginx_forward_good"
    "proxy half-503 $proxy_flaky"
    "nginx-retter half-503 $nginx_retter_flaky"
    "nginx-microcache half-503 $nginx_cache_flaky"
)

load() { # $1: port, $2: requests; prints "rps p50 p99 non2xx"
    local out
    out=$(taskset -c "$LOAD_CPU" ab -k -q -c "$CONCURRENCY" -n "$2" -e "$work/pct.csv" \
        "http://127.0.0.1:$1/file.bin" 2>&1)
    local rps non2xx p50 p99
    rps=$(awk '/^Requests per second/ {print $4}' <<<"$out")
    non2xx=$(awk '/^Non-2xx responses/ {print $3}' <<<"$out")
    p50=$(awk -F, '$1 == "50" {print $2}' "$work/pct.csv")
    p99=$(awk -F, '$1 == "99" {print $2}' "$work/pct.csv")
    echo "$rps $p50 $p99 ${non2xx:-0}"
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min), $(nproc) CPUs"
for v in "${variants[@]}"; do
    read -r _ _ port <<<"$v"
    load "$port" 2000 >/dev/null # warm up: pools, caches, the breaker's window
done
: >"$work/results"
for round in $(seq "$ROUNDS"); do
    n=${#variants[@]}
    for k in $(seq 0 $((n - 1))); do
        read -r name scenario port <<<"${variants[$(((k + round) % n))]}"
        echo "$name $scenario $round $(load "$port" "$REQUESTS")" >>"$work/results"
    done
done
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$work/results" "$ROUNDS" "$CONCURRENCY" "$REQUESTS" <<'EOF'
import sys, statistics
path, rounds, c, n = sys.argv[1:]
rows = {}
for line in open(path):
    name, scenario, _, rps, p50, p99, non2xx = line.split()
    rows.setdefault((scenario, name), []).append((float(rps), float(p50), float(p99), int(non2xx)))
def fmt(xs, f):
    return f"{f(statistics.median(xs))} ({f(min(xs))}-{f(max(xs))})"
print(f"\nab -k -c {c} -n {n}, {rounds} rounds; medians (min-max)\n")
print("| upstream | front | requests/s | p50 ms | p99 ms | non-2xx per run |")
print("|---|---|---|---|---|---|")
for (scenario, name), r in sorted(rows.items()):
    rps, p50, p99, bad = zip(*r)
    print(f"| {scenario} | {name} | {fmt(rps, lambda x: f'{x:,.0f}')} | "
          f"{fmt(p50, lambda x: f'{x:.2f}')} | {fmt(p99, lambda x: f'{x:.2f}')} | "
          f"{statistics.median(bad):.0f} |")
print("\nThe proxy against each nginx, round by round: requests/s ratio, p99 ratio")
for scenario in ("good", "half-503"):
    for other in ("nginx-retter", "nginx-forward", "nginx-microcache"):
        proxy, nginx = rows.get((scenario, "proxy")), rows.get((scenario, other))
        if proxy and nginx:
            ratio = [p[0] / q[0] for p, q in zip(proxy, nginx)]
            p99 = [p[2] / q[2] for p, q in zip(proxy, nginx)]
            print(f"{scenario}: proxy / {other} requests/s {fmt(ratio, lambda x: f'{x:.2f}')}, "
                  f"p99 {fmt(p99, lambda x: f'{x:.2f}')}")
EOF

echo
echo "what the proxy's layers did with the half-failing upstream (its /metrics):"
curl -s "http://127.0.0.1:$proxy_flaky/metrics" |
    grep -E '^[a-z_]*(retr|breaker|stale|hedge|resilience)[a-z_]*(\{|[[:space:]])' | head -20 || true

if [ "$PERF" != 0 ] && command -v perf >/dev/null; then
    echo
    echo "where the proxy's time goes (perf, 3 s of load with the upstream that succeeds):"
    # Loaded for longer than perf records (a count of requests could run out first).
    taskset -c "$LOAD_CPU" ab -k -q -c "$CONCURRENCY" -t 6 -n 10000000 \
        "http://127.0.0.1:$proxy_good/file.bin" >/dev/null 2>&1 &
    ab_pid=$!
    sleep 0.5
    # System-wide (`-p` records nothing in some containers), with the cpu-clock event, which
    # works where a virtual machine has no hardware counters.
    if perf record -q -e cpu-clock -F 4999 -a -o "$work/perf.data" -- sleep 3 \
        >/dev/null 2>&1; then
        perf script -i "$work/perf.data" -F comm,pid,ip,sym 2>/dev/null |
            python3 -c '
import collections, re, sys
proxy = sys.argv[1]
by_comm, by_crate, by_fn, total, mine = collections.Counter(), collections.Counter(), collections.Counter(), 0, 0
for line in sys.stdin:
    m = re.match(r"\s*(.+?)\s+(\d+)\s+([0-9a-f]+)\s*(.*)$", line)
    if not m:
        continue
    comm, pid, _, sym = m.groups()
    total += 1
    if pid != proxy:
        by_comm["idle" if comm == "swapper" else comm] += 1
        continue
    by_comm["the proxy"] += 1
    mine += 1
    sym = sym.strip() or "[unknown]"
    by_fn[sym[:110]] += 1
    if "::" not in sym:
        by_crate["kernel, libc (no Rust path)"] += 1
        continue
    path = re.match(r"<*([A-Za-z_][A-Za-z0-9_]*)(::[a-z_][a-z0-9_]*)?", sym)
    crate = path.group(1) if path else sym
    by_crate[crate + (path.group(2) or "") if crate == "http_doer" else crate] += 1
print(f"{total} samples on both CPUs, {mine} in the proxy")
print("| who (both CPUs) | share |")
print("|---|---|")
for name, n in by_comm.most_common(8):
    print(f"| {name} | {100 * n / total:.1f}% |")
print()
print("| in the proxy, by crate | share of the proxy |")
print("|---|---|")
for name, n in by_crate.most_common(14):
    print(f"| {name} | {100 * n / max(mine, 1):.1f}% |")
print()
print("| in the proxy, function (self time) | share of the proxy |")
print("|---|---|")
for name, n in by_fn.most_common(20):
    print(f"| `{name}` | {100 * n / max(mine, 1):.1f}% |")
' "$proxy_good_pid"
    else
        echo "(perf could not record; PERF=0 skips this)"
    fi
    wait "$ab_pid" 2>/dev/null || true
fi
