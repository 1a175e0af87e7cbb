# Shared by the bench scripts (sourced, not run): settings checks,
# tool installation, a temporary folder whose processes die with the script, free ports,
# per-process-tree CPU time and a wrk run measured with it (`measure`), and the private
# upstream the proxy benchmarks share.
# The sourcing script sets `set -euo pipefail` and GROVE_BIN, DURATION, WARMUP, CONNS first.

die() { echo "bench: $*" >&2; exit 1; }

for v in DURATION WARMUP CONNS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number (got '${!v}')"
done
[[ -x "$GROVE_BIN" ]] || die "grove binary not found at $GROVE_BIN; build it: cargo build --release -p grove (or set GROVE_BIN)"
(($(nproc) >= 2)) || die "needs 2 CPUs (proxy on CPU 0, load and upstream on CPU 1)"

# need COMMAND:DEBIAN_PACKAGE...: installs the missing ones when root, else says how.
need() {
    local missing=() tool
    for tool in "$@"; do
        command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
    done
    ((${#missing[@]})) || return 0
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        echo "bench: installing ${missing[*]}..." >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1; apt-get install -y -q "${missing[@]}" >/dev/null; } \
            || die "apt-get install ${missing[*]} failed"
    else
        die "missing: ${missing[*]}; install with: sudo apt-get install -y ${missing[*]}"
    fi
}

# A temporary folder; every pid added to PIDS is killed and the folder removed on exit.
WORK="$(mktemp -d /tmp/grove-bench.XXXXXX)"
# Readable by the servers' workers: nginx started as root runs them as nobody.
chmod 755 "$WORK"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_url() { # url seconds
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        curl -sk -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# utime+stime in clock ticks of a pid and all its descendants.
tree_ticks() {
    python3 - "$1" <<'PY'
import os, sys
root = int(sys.argv[1])
kids = {}
total = 0
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        st = open(f"/proc/{d}/stat").read()
    except OSError:
        continue
    rest = st[st.rindex(")") + 2:].split()
    t = int(rest[11]) + int(rest[12])
    if int(d) == root:
        total += t
    kids.setdefault(int(rest[1]), []).append((int(d), t))
todo = [root]
while todo:
    for c, t in kids.get(todo.pop(), []):
        total += t
        todo.append(c)
print(total)
PY
}
HZ="$(getconf CLK_TCK)"

# start_upstream: a private nginx on CPU 1 answering BODY (60 bytes) on UP_PORT.
start_upstream() {
    NGINX="$(command -v nginx)"
    UP_PORT="$(free_port)"
    BODY="$(printf 'x%.0s' $(seq 1 59))"
    mkdir -p "$WORK/upstream/logs"
    cat >"$WORK/upstream/nginx.conf" <<CONF
worker_processes 1;
error_log $WORK/upstream/logs/error.log;
pid $WORK/upstream/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$UP_PORT;
        location / { default_type text/plain; return 200 "$BODY\n"; }
    }
}
CONF
    taskset -c 1 "$NGINX" -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" -g 'daemon off;' &
    PIDS+=($!)
    wait_url "http://127.0.0.1:$UP_PORT/" 10 || die "the upstream nginx did not start (see $WORK/upstream/logs)"
}

# measure LABEL URL [WRK_ARGS...]: wrk's warm-up (WARMUP s) and measured run (DURATION s) on
# CPU 1 against URL, with PROXY_PID's tree CPU time around the measured one. Sets MEASURED_RPS
# and MEASURED_CPU (microseconds per request); says wrk's errors on stderr under LABEL.
measure() {
    local label="$1" url="$2" before after out requests errors
    shift 2
    if ((WARMUP > 0)); then
        taskset -c 1 wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$@" "$url" >/dev/null
    fi
    before="$(tree_ticks "$PROXY_PID")"
    out="$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" "$@" "$url")"
    after="$(tree_ticks "$PROXY_PID")"
    requests="$(awk '/requests in/ {print $1}' <<<"$out")"
    errors="$(awk '/Non-2xx|Socket errors/' <<<"$out")"
    [[ -z "$errors" ]] || echo "bench: $label: $errors" >&2
    MEASURED_RPS="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    MEASURED_CPU="$(python3 -c 'import sys; t, hz, n = map(float, sys.argv[1:]); print("%.1f" % (t / hz / n * 1e6))' \
        "$((after - before))" "$HZ" "$requests")"
}
