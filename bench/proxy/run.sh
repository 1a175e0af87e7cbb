#!/usr/bin/env bash
# Benchmark: grove's edge against nginx, HAProxy and Caddy as reverse proxies in front of the
# same upstream, in one run. A benchmark, not a test: it prints numbers and the goals beside
# them, and exits 0 whether or not the goals are met.
#
#   cargo build --release -p grove && bench/proxy/run.sh
#
# Environment:
#   GROVE_BIN  grove binary (default: target/release/grove under the repo root)
#   DURATION   seconds of measured load per proxy (default 10)
#   WARMUP     seconds of unmeasured load first (default 2)
#   CONNS      wrk connections (default 50)
#   PROXIES    which to run, in order (default "nginx haproxy caddy grove")
#   ROUNDS     how many times each runs, interleaved; the medians are reported (default 3)
#   ACCESS_LOG on (default): nginx and grove write an access log, nginx's buffered as grove's
#              is (32 KiB, flushed every 100 ms); off: neither writes one. HAProxy and Caddy
#              as configured here write none either way.
#
# Every proxy runs pinned to CPU 0 with taskset; the upstream (a private nginx answering a
# 60-byte body) and wrk share CPU 1. Everything listens on 127.0.0.1 ports picked free at
# start, with private configs and logs in a temporary folder; no system-wide server is used
# or touched. For each proxy it prints req/s and p99 (from wrk --latency) and the proxy's own
# CPU time per request: utime+stime of its whole process tree over the measured run (from
# /proc), divided by the requests wrk counted. Ratios are to nginx.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
GROVE_BIN="${GROVE_BIN:-$REPO_ROOT/target/release/grove}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-50}"
PROXIES="${PROXIES:-nginx haproxy caddy grove}"
ACCESS_LOG="${ACCESS_LOG:-on}"

# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a whole number from 1 (got '$ROUNDS')"
[[ "$ACCESS_LOG" == on || "$ACCESS_LOG" == off ]] || die "ACCESS_LOG must be on or off (got '$ACCESS_LOG')"
need wrk:wrk nginx:nginx-light haproxy:haproxy caddy:caddy taskset:util-linux python3:python3 curl:curl
start_upstream

start_nginx() { # port
    mkdir -p "$WORK/nginx/logs"
    local log="access_log $WORK/nginx/logs/access.log combined buffer=32k flush=100ms;"
    [[ "$ACCESS_LOG" == on ]] || log="access_log off;"
    cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
error_log $WORK/nginx/logs/error.log;
pid $WORK/nginx/nginx.pid;
events { worker_connections 4096; }
http {
    $log
    keepalive_requests 1000000;
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

start_haproxy() { # port
    mkdir -p "$WORK/haproxy"
    cat >"$WORK/haproxy/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option forwardfor
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:$1
    default_backend be
backend be
    server up 127.0.0.1:$UP_PORT
EOF
    taskset -c 0 haproxy -db -f "$WORK/haproxy/haproxy.cfg" &
    PROXY_PID=$!
}

start_caddy() { # port
    mkdir -p "$WORK/caddy"
    cat >"$WORK/caddy/Caddyfile" <<EOF
{
    admin off
    auto_https off
}
http://127.0.0.1:$1 {
    reverse_proxy 127.0.0.1:$UP_PORT
}
EOF
    XDG_DATA_HOME="$WORK/caddy" XDG_CONFIG_HOME="$WORK/caddy" GOMAXPROCS=1 \
        taskset -c 0 caddy run --config "$WORK/caddy/Caddyfile" --adapter caddyfile \
        >"$WORK/caddy/caddy.log" 2>&1 &
    PROXY_PID=$!
}

start_grove() { # port
    mkdir -p "$WORK/grove"
    cp "$REPO_ROOT/bench/proxy/grove.toml" "$WORK/grove/grove.toml"
    if [[ "$ACCESS_LOG" == off ]]; then
        sed -i '/^listen = /a access_log = { off = true }' "$WORK/grove/grove.toml"
    fi
    BENCH_PORT="$1" BENCH_UPSTREAM="127.0.0.1:$UP_PORT" \
        taskset -c 0 "$GROVE_BIN" up -f "$WORK/grove/grove.toml" >"$WORK/grove/up.log" 2>&1 &
    PROXY_PID=$!
}

# Each round runs every proxy once, in order; the figures are each proxy's median over the
# rounds, so a slow spell on a shared machine does not fall on one proxy only.
declare -A RPS P99 CPU
for ((round = 1; round <= ROUNDS; round++)); do
for name in $PROXIES; do
    declare -F "start_$name" >/dev/null || die "unknown proxy '$name' (nginx, haproxy, caddy, grove)"
    port="$(free_port)"
    "start_$name" "$port"
    PIDS+=("$PROXY_PID")
    wait_url "http://127.0.0.1:$port/" 20 || die "$name did not start on port $port"
    # Same answer as the upstream?
    got="$(curl -s "http://127.0.0.1:$port/")"
    [[ "$got" == "$BODY" ]] || die "$name answered '$got', not the upstream's body"
    if ((WARMUP > 0)); then
        taskset -c 1 wrk -t1 -c"$CONNS" -d"${WARMUP}s" "http://127.0.0.1:$port/" >/dev/null
    fi
    before="$(tree_ticks "$PROXY_PID")"
    out="$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/")"
    after="$(tree_ticks "$PROXY_PID")"
    requests="$(awk '/requests in/ {print $1}' <<<"$out")"
    errors="$(awk '/Non-2xx|Socket errors/' <<<"$out")"
    [[ -z "$errors" ]] || echo "bench: $name: $errors" >&2
    rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    p99="$(python3 -c '
import sys
v = sys.argv[1]
for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
    if v.endswith(unit):
        print("%.2f" % (float(v[: -len(unit)]) * f)); break
' "$p99")"
    cpu="$(python3 -c 'import sys; t, hz, n = map(float, sys.argv[1:]); print("%.1f" % (t / hz / n * 1e6))' \
        "$((after - before))" "$HZ" "$requests")"
    RPS[$name]="${RPS[$name]:-} $rps"
    P99[$name]="${P99[$name]:-} $p99"
    CPU[$name]="${CPU[$name]:-} $cpu"
    echo "round $round: $name $rps req/s, p99 $p99 ms, $cpu us/req" >&2
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
done
done
# shellcheck disable=SC2086 # the list is split on purpose
median() { python3 -c 'import statistics, sys; print("%g" % statistics.median(map(float, sys.argv[1:])))' $1; }
for name in $PROXIES; do
    RPS[$name]="$(median "${RPS[$name]}")"
    P99[$name]="$(median "${P99[$name]}")"
    CPU[$name]="$(median "${CPU[$name]}")"
done

# The same load straight at the upstream, for scale.
out="$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$UP_PORT/")"
DIRECT="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"

echo
echo "proxy benchmark: medians of $ROUNDS rounds of ${DURATION}s, $CONNS keep-alive connections, 60-byte body; proxy on CPU 0, wrk + upstream on CPU 1; access log $ACCESS_LOG (nginx's buffered 32k/100ms like grove's)"
echo "kernel $(uname -r), $(nproc) CPUs; $("$NGINX" -v 2>&1 | sed 's/.*: //'), $(haproxy -v | head -1 | awk '{print "HAProxy " $3}'), Caddy $(caddy version | awk '{print $1}')"
printf '%-8s %12s %10s %14s %10s %10s %10s\n' proxy req/s p99_ms cpu_us/req rps/nginx p99/nginx cpu/nginx
for name in $PROXIES; do
    python3 - "$name" "${RPS[$name]}" "${P99[$name]}" "${CPU[$name]}" \
        "${RPS[nginx]:-}" "${P99[nginx]:-}" "${CPU[nginx]:-}" <<'PY'
import sys
name, rps, p99, cpu, nr, np, nc = sys.argv[1:]
ratio = lambda a, b: "%.2f" % (float(a) / float(b)) if b else "-"
print("%-8s %12s %10s %14s %10s %10s %10s" % (name, rps, p99, cpu, ratio(rps, nr), ratio(p99, np), ratio(cpu, nc)))
PY
done
printf '%-8s %12s\n' direct "$DIRECT"
echo
echo "goals for grove: cpu/nginx <= 0.80, rps/nginx >= 1.00, p99/nginx <= 1.00"
