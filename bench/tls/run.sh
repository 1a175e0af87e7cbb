#!/usr/bin/env bash
# Benchmark: HTTPS termination, grove's edge against nginx (OpenSSL) in front of the same
# upstream, in one run. A benchmark, not a test: it prints numbers and exits 0.
#
#   cargo build --release -p grove && bench/tls/run.sh
#
# Environment: GROVE_BIN (default target/release/grove), DURATION (10 s), WARMUP (2 s),
# CONNS (50).
#
# Both proxies use the same ECDSA P-256 certificate (made with openssl in a temporary
# folder), TLS 1.3, and are pinned to CPU 0; the upstream (a private nginx answering 60 bytes)
# and wrk share CPU 1. Two loads per proxy:
#   keep-alive   wrk over 50 kept-alive HTTPS connections: req/s, p99, CPU per request
#   handshakes   wrk with `Connection: close`: every request is a new TLS handshake, so
#                req/s is handshakes per second; CPU per handshake
#   h2           h2load over 50 HTTP/2 connections, 10 streams each (`-c50 -m10`): what a
#                browser sends; req/s and CPU per request (h2load gives no p99: "-")
# CPU is utime+stime of the proxy's process tree from /proc over the run.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
GROVE_BIN="${GROVE_BIN:-$REPO_ROOT/target/release/grove}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
CONNS="${CONNS:-50}"

# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"
need wrk:wrk h2load:nghttp2-client nginx:nginx-light openssl:openssl taskset:util-linux python3:python3 curl:curl

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

start_upstream

start_nginx() {
    mkdir -p "$WORK/nginx/logs"
    cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
error_log $WORK/nginx/logs/error.log;
pid $WORK/nginx/nginx.pid;
events { worker_connections 4096; }
http {
    access_log $WORK/nginx/logs/access.log;
    keepalive_requests 1000000;
    upstream app { server 127.0.0.1:$UP_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$1 ssl;
        http2 on;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
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
CONF
    # nginx 1.22 has no `http2 on;`: fall back to the listen flag.
    if ! "$NGINX" -t -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >/dev/null 2>&1; then
        sed -i 's/ ssl;$/ ssl http2;/; /http2 on;/d' "$WORK/nginx/nginx.conf"
    fi
    taskset -c 0 "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
    PROXY_PID=$!
}

start_grove() {
    mkdir -p "$WORK/grove"
    cp "$REPO_ROOT/bench/tls/grove.toml" "$WORK/grove/grove.toml"
    BENCH_PORT="$1" BENCH_UPSTREAM="127.0.0.1:$UP_PORT" BENCH_CERT="$WORK/cert.pem" BENCH_KEY="$WORK/key.pem" \
        taskset -c 0 "$GROVE_BIN" up -f "$WORK/grove/grove.toml" >"$WORK/grove/up.log" 2>&1 &
    PROXY_PID=$!
}

measure_h2() { # port -> "rps - cpu_us"
    local url="https://127.0.0.1:$1/" before after out
    ((WARMUP > 0)) && taskset -c 1 h2load -t1 -c"$CONNS" -m10 -D "$WARMUP" "$url" >/dev/null
    before="$(tree_ticks "$PROXY_PID")"
    out="$(taskset -c 1 h2load -t1 -c"$CONNS" -m10 -D "$DURATION" "$url")"
    after="$(tree_ticks "$PROXY_PID")"
    python3 - "$out" "$((after - before))" "$HZ" <<'PY'
import re, sys
out, ticks, hz = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
m = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
if not m or "Application protocol: h2" not in out:
    sys.exit("h2load did not run HTTP/2:\n" + out)
ok, failed = float(m.group(2)), int(m.group(3)) + int(m.group(4))
if failed:
    print(f"bench: h2: {failed} requests failed", file=sys.stderr)
rps = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1))
print("%.0f - %.1f" % (rps, ticks / hz / max(ok, 1) * 1e6))
PY
}

measure() { # name port mode -> "rps p99ms cpu_us"
    [[ "$3" == h2 ]] && { measure_h2 "$2"; return; }
    local extra=()
    [[ "$3" == handshakes ]] && extra=(-H "Connection: close")
    ((WARMUP > 0)) && taskset -c 1 wrk -t1 -c"$CONNS" -d"${WARMUP}s" "${extra[@]}" "https://127.0.0.1:$2/" >/dev/null
    local before after out
    before="$(tree_ticks "$PROXY_PID")"
    out="$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${extra[@]}" "https://127.0.0.1:$2/")"
    after="$(tree_ticks "$PROXY_PID")"
    python3 - "$out" "$((after - before))" "$HZ" <<'PY'
import re, sys
out, ticks, hz = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
n = float(re.search(r"(\d+) requests in", out).group(1))
m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)", out, re.M)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
print("%.0f %.2f %.1f" % (rps, p99, ticks / hz / max(n, 1) * 1e6))
PY
}

declare -A R
for name in nginx grove; do
    port="$(free_port)"
    "start_$name" "$port"
    PIDS+=("$PROXY_PID")
    wait_url "https://127.0.0.1:$port/" 20 || die "$name did not start on port $port"
    [[ "$(curl -sk "https://127.0.0.1:$port/")" == "$BODY" ]] || die "$name does not answer the upstream's body"
    R[$name.keepalive]="$(measure "$name" "$port" keepalive)"
    R[$name.handshakes]="$(measure "$name" "$port" handshakes)"
    R[$name.h2]="$(measure "$name" "$port" h2)"
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
done

echo
echo "TLS benchmark: ${DURATION}s per load, $CONNS connections, ECDSA P-256, 60-byte body; proxy on CPU 0, wrk + upstream on CPU 1"
echo "$("$NGINX" -v 2>&1 | sed 's/.*: //') with $(openssl version | awk '{print $1, $2}'); grove with rustls (ring)"
printf '%-8s %-11s %10s %8s %12s %10s %10s\n' proxy load req/s p99_ms cpu_us/req rps/nginx cpu/nginx
for load in keepalive handshakes h2; do
    for name in nginx grove; do
        read -r rps p99 cpu <<<"${R[$name.$load]}"
        read -r nrps _ ncpu <<<"${R[nginx.$load]}"
        printf '%-8s %-11s %10s %8s %12s %10s %10s\n' "$name" "$load" "$rps" "$p99" "$cpu" \
            "$(python3 -c "print('%.2f' % ($rps / $nrps))")" "$(python3 -c "print('%.2f' % ($cpu / $ncpu))")"
    done
done
echo
echo "goal for grove: rps/nginx >= 1.00 on both loads"
