#!/usr/bin/env bash
# Benchmark: what an idle keep-alive client connection costs in memory, grove's edge against
# nginx, in one run. A benchmark, not a test: it prints numbers and exits 0.
#
#   cargo build --release -p grove && sudo bench/idle/run.sh
#
# Environment: GROVE_BIN (default target/release/grove), COUNTS (default "1000 5000 10000":
# connections held, cumulative), MODES (default "h1 h1s h2"), SERVERS (default "nginx grove").
#
# Each server (nginx: worker_processes 1, keepalive_timeout 600s, no access log; grove: the
# same timeouts, no access log) proxies to the same private nginx upstream. For each mode
# (h1: plain HTTP/1.1; h1s: HTTPS with HTTP/1.1; h2: HTTPS with HTTP/2) hold.py opens
# connections in steps up to each of COUNTS, each serving one proxied GET and then idle, and
# the server's RSS (VmRSS summed over its process tree, read from /proc) is taken before and
# at each step. The figure is (RSS at the step - RSS before) / connections: what each idle
# connection costs. The server is started afresh for each mode.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
GROVE_BIN="${GROVE_BIN:-$REPO_ROOT/target/release/grove}"
COUNTS="${COUNTS:-1000 5000 10000}"
MODES="${MODES:-h1 h1s h2}"
SERVERS="${SERVERS:-nginx grove}"
DURATION=0 WARMUP=0 CONNS=1 # lib.sh's checks; no wrk here

# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"
need nginx:nginx-light openssl:openssl taskset:util-linux python3:python3 curl:curl

for c in $COUNTS; do [[ "$c" =~ ^[0-9]+$ ]] || die "COUNTS must be whole numbers (got '$c')"; done
most="$(tr ' ' '\n' <<<"$COUNTS" | sort -n | tail -1)"
ulimit -n $((most + 1000)) 2>/dev/null || die "cannot raise the open-file limit to $((most + 1000)) (hard limit $(ulimit -Hn)): run as root or lower COUNTS"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

start_upstream

start_nginx() { # http_port https_port
    mkdir -p "$WORK/nginx/logs"
    cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile $((most + 1000));
error_log $WORK/nginx/logs/error.log;
pid $WORK/nginx/nginx.pid;
events { worker_connections $((most + 500)); }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    upstream app { server 127.0.0.1:$UP_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$1;
        listen 127.0.0.1:$2 ssl;
        http2 on;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
        }
    }
}
CONF
    # nginx 1.22 has no `http2 on;`: fall back to the listen flag.
    if ! "$NGINX" -t -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >/dev/null 2>&1; then
        sed -i 's/ ssl;$/ ssl http2;/; /http2 on;/d' "$WORK/nginx/nginx.conf"
    fi
    taskset -c 0 "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
    SERVER_PID=$!
}

start_grove() { # http_port https_port
    mkdir -p "$WORK/grove"
    cp "$REPO_ROOT/bench/idle/grove.toml" "$WORK/grove/grove.toml"
    BENCH_HTTP="$1" BENCH_HTTPS="$2" BENCH_UPSTREAM="127.0.0.1:$UP_PORT" \
        BENCH_CERT="$WORK/cert.pem" BENCH_KEY="$WORK/key.pem" \
        taskset -c 0 "$GROVE_BIN" up -f "$WORK/grove/grove.toml" >"$WORK/grove/up.log" 2>&1 &
    SERVER_PID=$!
}

# VmRSS in KiB summed over a pid and its descendants.
tree_rss() {
    python3 - "$1" <<'PY'
import os, sys
root = int(sys.argv[1])
kids, rss = {}, {}
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        st = open(f"/proc/{d}/stat").read()
        status = open(f"/proc/{d}/status").read()
    except OSError:
        continue
    kids.setdefault(int(st[st.rindex(")") + 2:].split()[1]), []).append(int(d))
    rss[int(d)] = next((int(l.split()[1]) for l in status.splitlines() if l.startswith("VmRSS:")), 0)
total, todo = 0, [root]
while todo:
    p = todo.pop()
    total += rss.get(p, 0)
    todo.extend(kids.get(p, []))
print(total)
PY
}

declare -A R
for server in $SERVERS; do
    for mode in $MODES; do
        http="$(free_port)" https="$(free_port)"
        "start_$server" "$http" "$https"
        PIDS+=("$SERVER_PID")
        wait_url "https://127.0.0.1:$https/" 20 || die "$server did not start (https port $https)"
        [[ "$(curl -s "http://127.0.0.1:$http/")" == "$BODY" ]] || die "$server does not answer the upstream's body on plain HTTP"
        port="$https"
        [[ "$mode" == h1 ]] && port="$http"
        sleep 1
        base="$(tree_rss "$SERVER_PID")"
        coproc HOLD { taskset -c 1 python3 "$REPO_ROOT/bench/idle/hold.py" 127.0.0.1 "$port" "$mode"; }
        total=0
        for count in $(tr ' ' '\n' <<<"$COUNTS" | sort -n); do
            echo "open $((count - total))" >&"${HOLD[1]}"
            read -r _ total failed <&"${HOLD[0]}" || die "hold.py ended early ($server, $mode)"
            ((failed == 0)) || echo "bench: $server $mode: $failed connections failed" >&2
            rss="$(tree_rss "$SERVER_PID")"
            R[$server.$mode.$count]="$total $rss $(python3 -c "print('%.2f' % (($rss - $base) * 1024 / max($total, 1) / 1000))")"
        done
        echo quit >&"${HOLD[1]}"
        wait "$HOLD_PID" 2>/dev/null || true
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        R[$server.$mode.base]="$base"
    done
done

echo
echo "Idle keep-alive connections: memory per connection (RSS of the server's process tree after - before, / connections held)"
echo "$("$NGINX" -v 2>&1 | sed 's/.*: //') worker_processes 1; grove $("$GROVE_BIN" --version 2>/dev/null | awk '{print $2}'); server on CPU 0, hold.py on CPU 1"
printf '%-6s %-5s %8s %12s %12s %14s %10s\n' server mode held rss_before rss_after KB_per_conn vs_nginx
for mode in $MODES; do
    for count in $(tr ' ' '\n' <<<"$COUNTS" | sort -n); do
        for server in $SERVERS; do
            read -r total rss per <<<"${R[$server.$mode.$count]}"
            ratio=""
            if [[ -n "${R[nginx.$mode.$count]:-}" ]]; then
                read -r _ _ nper <<<"${R[nginx.$mode.$count]}"
                ratio="$(python3 -c "print('%.2f' % ($per / $nper) if $nper > 0 else 'n/a')")"
            fi
            printf '%-6s %-5s %8s %9s KiB %9s KiB %14s %10s\n' "$server" "$mode" "$total" \
                "${R[$server.$mode.base]}" "$rss" "$per" "$ratio"
        done
    done
done
echo
echo "goal for grove: KB_per_conn <= nginx's (vs_nginx <= 1.00)"
