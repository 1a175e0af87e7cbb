#!/usr/bin/env bash
# Benchmark: static files, grove's `[edge] static` against nginx's `root`, same files, same
# run. A benchmark, not a test: it prints numbers and exits 0 whatever they are.
#
#   cargo build --release -p grove && bench/static/run.sh
#
# Environment:
#   GROVE_BIN  grove binary (default: target/release/grove under the repo root)
#   DURATION   seconds of measured load per server and file (default 10)
#   WARMUP     seconds of unmeasured load first (default 2)
#   CONNS      wrk connections (default 50)
#   ROUNDS     how many times each runs, interleaved; the medians are reported (default 3)
#
# Both servers run pinned to CPU 0, wrk on CPU 1. nginx is configured as grove serves: one
# worker, `sendfile on`, keep-alive requests unbounded, its access log buffered as grove's is
# (32 KiB, flushed every 100 ms), ETags and Last-Modified on (its defaults), no
# open_file_cache (grove checks each file on every request too). Two files: 4 KiB and 1 MiB.
# For each it prints req/s and the server's CPU time per request (utime+stime of its process
# tree over the measured run, from /proc, divided by the requests wrk counted).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
GROVE_BIN="${GROVE_BIN:-$REPO_ROOT/target/release/grove}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-50}"

# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a whole number from 1 (got '$ROUNDS')"
need wrk:wrk nginx:nginx-light taskset:util-linux python3:python3 curl:curl
NGINX="$(command -v nginx)"

mkdir -p "$WORK/public"
head -c 4096 /dev/urandom | base64 -w 76 | head -c 4096 >"$WORK/public/small.txt"
head -c 1048576 /dev/urandom >"$WORK/public/large.bin"
FILES="small.txt large.bin"

start_nginx() { # port
    mkdir -p "$WORK/nginx/logs"
    cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
error_log $WORK/nginx/logs/error.log;
pid $WORK/nginx/nginx.pid;
events { worker_connections 4096; }
http {
    access_log $WORK/nginx/logs/access.log combined buffer=32k flush=100ms;
    keepalive_requests 1000000;
    sendfile on;
    types { text/plain txt; application/octet-stream bin; }
    server {
        listen 127.0.0.1:$1;
        location /static/ { alias $WORK/public/; }
    }
}
EOF
    taskset -c 0 "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
    PROXY_PID=$!
}

start_grove() { # port
    mkdir -p "$WORK/grove"
    cat >"$WORK/grove/grove.toml" <<EOF
[stack]
name = "bench-static"

[edge]
listen = ["http://127.0.0.1:$1"]
static = { "/static" = "$WORK/public" }
EOF
    taskset -c 0 "$GROVE_BIN" up -f "$WORK/grove/grove.toml" >"$WORK/grove/up.log" 2>&1 &
    PROXY_PID=$!
}

declare -A RPS CPU
for ((round = 1; round <= ROUNDS; round++)); do
for name in nginx grove; do
    port="$(free_port)"
    "start_$name" "$port"
    PIDS+=("$PROXY_PID")
    wait_url "http://127.0.0.1:$port/static/small.txt" 20 || die "$name did not start on port $port"
    for f in $FILES; do
        url="http://127.0.0.1:$port/static/$f"
        cmp -s <(curl -s "$url") "$WORK/public/$f" || die "$name served $f wrong"
        measure "$name $f" "$url"
        rps="$MEASURED_RPS" cpu="$MEASURED_CPU"
        RPS[$name.$f]="${RPS[$name.$f]:-} $rps"
        CPU[$name.$f]="${CPU[$name.$f]:-} $cpu"
        echo "round $round: $name $f $rps req/s, $cpu us/req" >&2
    done
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
done
done
# shellcheck disable=SC2086 # the list is split on purpose
median() { python3 -c 'import statistics, sys; print("%g" % statistics.median(map(float, sys.argv[1:])))' $1; }

echo
echo "static file benchmark: medians of $ROUNDS rounds of ${DURATION}s, $CONNS keep-alive connections; server on CPU 0, wrk on CPU 1"
echo "kernel $(uname -r), $(nproc) CPUs; $("$NGINX" -v 2>&1 | sed 's/.*: //')"
printf '%-8s %-10s %10s %12s %10s %10s\n' server file req/s cpu_us/req rps/nginx cpu/nginx
for f in $FILES; do
    for name in nginx grove; do
        python3 - "$name" "$f" "$(median "${RPS[$name.$f]}")" "$(median "${CPU[$name.$f]}")" \
            "$(median "${RPS[nginx.$f]}")" "$(median "${CPU[nginx.$f]}")" <<'PY'
import sys
name, f, rps, cpu, nr, nc = sys.argv[1:]
ratio = lambda a, b: "%.2f" % (float(a) / float(b))
print("%-8s %-10s %10s %12s %10s %10s" % (name, f, rps, cpu, ratio(rps, nr), ratio(cpu, nc)))
PY
    done
done
echo
echo "goals for grove: small.txt cpu/nginx <= 1.00; large.bin rps/nginx >= 1.00"
