#!/usr/bin/env bash
# Benchmark: compression at the edge, grove's `compress = ["gzip"]` against nginx's `gzip on`
# at the same level (5), in front of the same upstream serving a 20 KB HTML page, in one
# run. A benchmark, not a test: it prints numbers and exits 0 whatever they are.
#
#   cargo build --release -p grove && bench/compress/run.sh
#
# Environment:
#   GROVE_BIN  grove binary (default: target/release/grove under the repo root)
#   DURATION   seconds of measured load per proxy and load (default 10)
#   WARMUP     seconds of unmeasured load first (default 2)
#   CONNS      wrk connections (default 50)
#   ROUNDS     how many times each runs, interleaved; the medians are reported (default 3)
#
# Both proxies run pinned to CPU 0; the upstream (a private nginx serving the page from a
# file) and wrk share CPU 1. nginx is configured as fairly as grove: one worker, its access
# log buffered as grove's is (32 KiB, flushed every 100 ms), keep-alive requests unbounded,
# keep-alive connections to the upstream, `gzip_comp_level 5` (grove's gzip level),
# `gzip_min_length 512`, `gzip_proxied any`, `gzip_vary on` (text/html is always in its gzip_types). Two loads each: `gzip` (wrk sends
# `Accept-Encoding: gzip`, every answer is compressed) and `identity` (no Accept-Encoding: the
# same proxies pass the page as it is), so the cost of compressing is the difference. For each
# it prints req/s, the proxy's CPU time per request (utime+stime of its process tree over the
# measured run, from /proc, divided by the requests wrk counted) and the bytes of one answer.
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

# The upstream: a private nginx on CPU 1 serving page.html (20 KB of HTML) with sendfile.
UP_PORT="$(free_port)"
mkdir -p "$WORK/upstream/logs" "$WORK/upstream/html"
python3 -c '
import sys
rows = "".join("<tr><td>%d</td><td>report line %d</td><td>%s</td></tr>\n" % (i, i, "ok" if i % 3 else "late") for i in range(400))
sys.stdout.write(("<!doctype html><html><body><table>\n" + rows)[:20480])
' >"$WORK/upstream/html/page.html"
cat >"$WORK/upstream/nginx.conf" <<CONF
worker_processes 1;
error_log $WORK/upstream/logs/error.log;
pid $WORK/upstream/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    sendfile on;
    types { text/html html; }
    server {
        listen 127.0.0.1:$UP_PORT;
        root $WORK/upstream/html;
    }
}
CONF
taskset -c 1 "$NGINX" -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
wait_url "http://127.0.0.1:$UP_PORT/page.html" 10 || die "the upstream nginx did not start (see $WORK/upstream/logs)"

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
    gzip on;
    gzip_comp_level 5;
    gzip_min_length 512;
    gzip_proxied any;
    gzip_vary on;
    upstream app { server 127.0.0.1:$UP_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$1;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
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
name = "bench-compress"

[edge]
listen = ["http://127.0.0.1:$1"]

[services.upstream]
upstreams = ["127.0.0.1:$UP_PORT"]
route = { compress = ["gzip"] }
EOF
    taskset -c 0 "$GROVE_BIN" up -f "$WORK/grove/grove.toml" >"$WORK/grove/up.log" 2>&1 &
    PROXY_PID=$!
}

declare -A RPS CPU SIZE
for ((round = 1; round <= ROUNDS; round++)); do
for name in nginx grove; do
    port="$(free_port)"
    "start_$name" "$port"
    PIDS+=("$PROXY_PID")
    url="http://127.0.0.1:$port/page.html"
    wait_url "$url" 20 || die "$name did not start on port $port"
    for load in gzip identity; do
        hdr=()
        [[ "$load" == gzip ]] && hdr=(-H "Accept-Encoding: gzip")
        # Both really compress (or not): the encoding and size of one answer.
        got="$(curl -s "${hdr[@]}" -D - -o /dev/null -w '%{size_download}' "$url")"
        enc="$(awk 'tolower($1) == "content-encoding:" {print $2}' <<<"$got" | tr -d '\r')"
        size="$(tail -n1 <<<"$got")"
        if [[ "$load" == gzip && "$enc" != gzip ]] || [[ "$load" == identity && -n "$enc" ]]; then
            die "$name answered the $load load with Content-Encoding '$enc'"
        fi
        measure "$name $load" "$url" "${hdr[@]}"
        rps="$MEASURED_RPS" cpu="$MEASURED_CPU"
        RPS[$name.$load]="${RPS[$name.$load]:-} $rps"
        CPU[$name.$load]="${CPU[$name.$load]:-} $cpu"
        SIZE[$name.$load]="$size"
        echo "round $round: $name $load $rps req/s, $cpu us/req, $size bytes" >&2
    done
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
done
done
# shellcheck disable=SC2086 # the list is split on purpose
median() { python3 -c 'import statistics, sys; print("%g" % statistics.median(map(float, sys.argv[1:])))' $1; }

echo
echo "compression benchmark: medians of $ROUNDS rounds of ${DURATION}s, $CONNS keep-alive connections, a $(stat -c %s "$WORK/upstream/html/page.html")-byte HTML page; proxy on CPU 0, wrk + upstream on CPU 1"
echo "kernel $(uname -r), $(nproc) CPUs; $("$NGINX" -v 2>&1 | sed 's/.*: //'); gzip level 5 on both"
printf '%-8s %-9s %10s %12s %8s %10s %10s\n' proxy load req/s cpu_us/req bytes rps/nginx cpu/nginx
for load in gzip identity; do
    for name in nginx grove; do
        python3 - "$name" "$load" "$(median "${RPS[$name.$load]}")" "$(median "${CPU[$name.$load]}")" \
            "${SIZE[$name.$load]}" "$(median "${RPS[nginx.$load]}")" "$(median "${CPU[nginx.$load]}")" <<'PY'
import sys
name, load, rps, cpu, size, nr, nc = sys.argv[1:]
ratio = lambda a, b: "%.2f" % (float(a) / float(b))
print("%-8s %-9s %10s %12s %8s %10s %10s" % (name, load, rps, cpu, size, ratio(rps, nr), ratio(cpu, nc)))
PY
    done
done
echo
echo "goal for grove: cpu/nginx <= 1.00 on the gzip load"
