#!/usr/bin/env bash
# Benchmark: grove vs Debian's supervisord supervising N trivial services
# (`sleep 100000`). A benchmark, not a test: it prints numbers and the goals
# beside them, and exits 0 whether or not the goals are met.
#
#   cargo build --release -p grove && bench/supervisor/run.sh
#
# Environment:
#   GROVE_BIN  grove binary (default: target/release/grove under the repo root)
#   N          services per supervisor (default 200)
#   REPS       kill -9 restart repetitions (default 5)
#   TIMEOUT    seconds before any single wait gives up (default 120)
#
# Measured, for grove first and then supervisord in the same run:
#   1. start: from issuing the start until all N units are running
#   2. the supervisor's own RSS (VmRSS of its pid) once everything runs
#   3. restart: kill -9 one unit, time until the replacement `sleep 100000`
#      is a child of the supervisor (/proc polled every 1 ms); median of REPS;
#      also the same gap as written in each supervisor's own log
#   4. stop: from issuing the stop until the supervisor and every unit are gone
# It never touches a system-wide supervisord: it runs its own with a private
# config, socket, pidfile and logs in a temporary folder.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
N="${N:-200}"
REPS="${REPS:-5}"
TIMEOUT="${TIMEOUT:-120}"
GROVE_BIN="${GROVE_BIN:-$REPO_ROOT/target/release/grove}"

die() { echo "bench: $*" >&2; exit 1; }

[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer (got '$N')"
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer (got '$REPS')"
[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "TIMEOUT must be a positive integer of seconds (got '$TIMEOUT')"

if [[ ! -x "$GROVE_BIN" ]]; then
    echo "bench: grove binary not found at $GROVE_BIN" >&2
    echo "bench: build it first:  cargo build --release -p grove   (or set GROVE_BIN)" >&2
    exit 1
fi
GROVE_BIN="$(cd "$(dirname "$GROVE_BIN")" && pwd)/$(basename "$GROVE_BIN")"
command -v python3 >/dev/null || die "python3 is needed"

# supervisord: Debian's package. Install only as root with apt; never start,
# stop or talk to the system-wide one the package may start.
if ! command -v supervisord >/dev/null || ! command -v supervisorctl >/dev/null; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        echo "bench: installing Debian's supervisor package..." >&2
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y supervisor >/dev/null 2>&1; then
            apt-get update >/dev/null 2>&1 || true
            apt-get install -y supervisor >/dev/null || die "apt-get install -y supervisor failed"
        fi
    else
        echo "bench: supervisord is not installed. Install it with:" >&2
        echo "    sudo apt-get install -y supervisor" >&2
        exit 1
    fi
fi
SUPERVISORD="$(command -v supervisord)"
SUPERVISORCTL="$(command -v supervisorctl)"

CPUS="$(nproc 2>/dev/null || echo 1)"
PIN_CPU=""
POLL_CPU=""
if command -v taskset >/dev/null; then
    PIN_CPU=0
    if (( CPUS >= 2 )); then POLL_CPU=1; fi
fi

BENCH_TMP="$(mktemp -d /tmp/grove-bench.XXXXXX)"

# Is $1 alive (not a zombie) and does its command line contain $2?
pid_is() {
    local pid="$1" want="$2" state
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
    [[ -n "$state" && "$state" != Z ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$want"
}

# kill -9 a supervisor and the children it still has.
kill_tree() {
    local pid="$1" kids
    kids="$(pgrep -P "$pid" 2>/dev/null || true)"
    kill -9 "$pid" 2>/dev/null || true
    # shellcheck disable=SC2086
    [[ -n "$kids" ]] && kill -9 $kids 2>/dev/null || true
}

cleanup() {
    local rc=$? pid i
    set +e
    # grove: `grove down` on the private stack, then kill whatever is left.
    pid="$(cat "$BENCH_TMP/grove.pid" 2>/dev/null)"
    if [[ -d "$BENCH_TMP/grove/.grove" ]] && { [[ -z "$pid" ]] || pid_is "$pid" grove; }; then
        timeout 60 "$GROVE_BIN" down -f "$BENCH_TMP/grove/grove.toml" >/dev/null 2>&1
    fi
    if pid_is "$pid" grove; then
        echo "bench: cleanup: grove daemon $pid still alive after grove down; killing it" >&2
        kill_tree "$pid"
    fi
    # supervisord: only ours (private config), never the system one.
    pid="$(cat "$BENCH_TMP/supervisord.pid" 2>/dev/null)"
    if pid_is "$pid" "$BENCH_TMP/supd/supervisord.conf"; then
        timeout 30 "$SUPERVISORCTL" -c "$BENCH_TMP/supd/supervisord.conf" shutdown >/dev/null 2>&1
        for ((i = 0; i < 300; i++)); do pid_is "$pid" supervisord || break; sleep 0.1; done
        if pid_is "$pid" supervisord; then
            echo "bench: cleanup: supervisord $pid did not shut down; killing it" >&2
            kill_tree "$pid"
        fi
    fi
    rm -rf "$BENCH_TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "grove:       $GROVE_BIN"
echo "supervisord: $SUPERVISORD ($("$SUPERVISORD" --version 2>/dev/null || echo '?'))"
echo "N=$N services (sleep 100000), REPS=$REPS, machine has $CPUS CPU(s)"

GROVE="$GROVE_BIN" SUPERVISORD="$SUPERVISORD" N="$N" REPS="$REPS" TIMEOUT="$TIMEOUT" \
BENCH_TMP="$BENCH_TMP" PIN_CPU="$PIN_CPU" POLL_CPU="$POLL_CPU" CPUS="$CPUS" \
python3 - <<'PY'
import datetime, http.client, json, os, re, signal, socket, statistics, subprocess, sys, time
import xmlrpc.client

GROVE = os.environ["GROVE"]
SUPERVISORD = os.environ["SUPERVISORD"]
N = int(os.environ["N"])
REPS = int(os.environ["REPS"])
TMO = float(os.environ["TIMEOUT"])
TMP = os.environ["BENCH_TMP"]
PIN_CPU = os.environ["PIN_CPU"]
POLL_CPU = os.environ["POLL_CPU"]
CPUS = int(os.environ["CPUS"])
PIN = ["taskset", "-c", PIN_CPU] if PIN_CPU else []
# SIGTERM ends the run through the `finally` below, like Ctrl-C does.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
if POLL_CPU:
    # The measuring side stays off the supervisors' CPU.
    os.sched_setaffinity(0, {int(POLL_CPU)})


class BenchError(Exception):
    pass


def now():
    return time.perf_counter()


def log(msg):
    print(f"  .. {msg}", flush=True)


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return s.rsplit(")", 1)[1].split()[0]


def alive(pid):
    st = proc_state(pid)
    return st is not None and st != "Z"


HAVE_CHILDREN = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def children(pid):
    """Pids whose parent is pid (every thread's children file, or a /proc scan)."""
    out = set()
    if HAVE_CHILDREN:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except (FileNotFoundError, ProcessLookupError):
            return out
        for t in tids:
            try:
                with open(f"/proc/{pid}/task/{t}/children") as f:
                    out.update(int(x) for x in f.read().split())
            except (FileNotFoundError, ProcessLookupError):
                pass
        return out
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        if int(s.rsplit(")", 1)[1].split()[1]) == pid:
            out.add(int(d))
    return out


def is_unit(pid):
    """A live `sleep 100000` (exec'd, not a fork still running the supervisor's code)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return (len(argv) >= 2 and os.path.basename(argv[0]) == b"sleep"
            and argv[1] == b"100000" and alive(pid))


def descendants(pid):
    """Children and grandchildren: grove's units run under a shim each (daemon -> shim ->
    unit); supervisord's are its own children."""
    kids = children(pid)
    out = set(kids)
    for k in kids:
        out |= children(k)
    return out


def unit_children(pid):
    return {c for c in descendants(pid) if is_unit(c)}


def shims_pss(pid):
    """Proportional set size (shared pages split) of grove's shims together, in bytes."""
    total = 0
    for c in children(pid):
        try:
            with open(f"/proc/{c}/cmdline", "rb") as f:
                if b"__shim" not in f.read():
                    continue
            with open(f"/proc/{c}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def vmrss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def cpus_allowed(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Cpus_allowed_list:"):
                return line.split()[1]
    return "?"


def wait_for(what, pred, interval, timeout=TMO):
    deadline = now() + timeout
    while True:
        v = pred()
        if v:
            return v
        if now() > deadline:
            raise BenchError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def measure_restart(sup_pid, old_pid):
    """kill -9 old_pid; ms until a new `sleep 100000` child of sup_pid exists."""
    before = descendants(sup_pid) | {old_pid}
    t0 = now()
    os.kill(old_pid, signal.SIGKILL)
    deadline = t0 + TMO
    while True:
        for c in descendants(sup_pid) - before:
            if is_unit(c):
                return (now() - t0) * 1000.0, c
        if now() > deadline:
            raise BenchError(f"no replacement for killed pid {old_pid} after {TMO:.0f} s")
        time.sleep(0.001)


def median(xs):
    return statistics.median(xs) if xs else None


R = {"grove": {}, "supervisord": {}}
grove_dir = os.path.join(TMP, "grove")
grove_toml = os.path.join(grove_dir, "grove.toml")
grove_pid = None
supd_dir = os.path.join(TMP, "supd")
supd_conf = os.path.join(supd_dir, "supervisord.conf")
supd_sock = os.path.join(supd_dir, "supervisor.sock")
supd_log = os.path.join(supd_dir, "supervisord.log")
supd_proc = None


# ---------------------------------------------------------------- grove
def grove(*args, timeout=TMO + 30, check=True):
    r = subprocess.run([GROVE, *args, "-f", grove_toml], capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise BenchError(f"grove {' '.join(args)} exited {r.returncode}: {r.stderr.strip() or r.stdout.strip()}")
    return r


def grove_ps():
    return json.loads(grove("ps", "--json").stdout)


def grove_unit(ps, name):
    for u in ps["units"]:
        if u["name"] == name:
            return u
    raise BenchError(f"grove ps has no unit {name}")


def grove_event_gap(unit, new_pid):
    """ms between the last `exited` event of unit and the `started` event after it."""
    evs = [json.loads(l) for l in grove("events", "--json", "-n", "50", unit).stdout.splitlines() if l.strip()]
    exited = None
    for e in evs:
        if e["kind"] == "exited":
            exited = e
        elif e["kind"] == "started" and exited is not None and e["id"] > exited["id"] \
                and f"pid {new_pid}" in e.get("message", ""):
            return e["ts_ms"] - exited["ts_ms"]
    return None


def bench_grove():
    global grove_pid
    os.makedirs(grove_dir)
    with open(grove_toml, "w") as f:
        f.write('[stack]\nname = "bench"\n[edge]\nlisten = []\n')
        for i in range(1, N + 1):
            f.write(f'[services.s{i}]\ncommand = "sleep 100000"\n')
    print(f"\n== grove: starting {N} services", flush=True)
    t0 = now()
    r = subprocess.run([*PIN, GROVE, "up", "-d", "-f", grove_toml], capture_output=True, text=True,
                       timeout=TMO + 30)
    t_start = (now() - t0) * 1000.0
    ps = None
    try:
        ps = grove_ps()
        grove_pid = ps["pid"]
        with open(os.path.join(TMP, "grove.pid"), "w") as f:
            f.write(str(grove_pid))
    except Exception:
        pass
    if r.returncode != 0:
        raise BenchError(f"grove up -d exited {r.returncode}: {r.stderr.strip() or r.stdout.strip()}")
    if ps is None:
        raise BenchError("grove ps --json failed after grove up -d")
    running = [u for u in ps["units"] if u["state"] == "running"]
    if len(ps["units"]) != N or len(running) != N:
        raise BenchError(f"grove up -d returned with {len(running)}/{len(ps['units'])} units running, expected {N}")
    kids = unit_children(grove_pid)
    log(f"grove up -d: {t_start:.1f} ms; daemon pid {grove_pid} (CPUs {cpus_allowed(grove_pid)}), "
        f"{len(kids)} sleep children")
    R["grove"]["start"] = t_start

    time.sleep(1.0)
    R["grove"]["rss"] = vmrss_bytes(grove_pid)
    R["grove"]["shims"] = shims_pss(grove_pid)
    log(f"daemon VmRSS {R['grove']['rss'] / 1e6:.1f} MB, its {N} shims {R['grove']['shims'] / 1e6:.1f} MB (PSS)")

    lat, evgap = [], []
    for i in range(REPS):
        name = f"s{i % N + 1}"
        old = grove_unit(grove_ps(), name)["pid"]
        ms, new = measure_restart(grove_pid, old)
        # Let grove settle: the unit reported running under its new pid.
        wait_for(f"grove to report {name} running again",
                 lambda: (lambda u: u["state"] == "running" and u["pid"] == new)(grove_unit(grove_ps(), name)),
                 0.01)
        gap = grove_event_gap(name, new)
        lat.append(ms)
        if gap is not None:
            evgap.append(gap)
        log(f"restart {name}: pid {old} -> {new}: {ms:.1f} ms observed, "
            f"{'?' if gap is None else gap} ms in grove's event log")
        time.sleep(0.2)
    R["grove"]["restart"] = median(lat)
    R["grove"]["restart_log"] = median(evgap)

    pids = unit_children(grove_pid)
    t0 = now()
    grove("down", timeout=TMO + 30)
    t_down_cli = (now() - t0) * 1000.0
    wait_for("the grove daemon and its units to be gone",
             lambda: not alive(grove_pid) and not any(alive(p) for p in pids), 0.001)
    R["grove"]["stop"] = (now() - t0) * 1000.0
    log(f"grove down: returned in {t_down_cli:.1f} ms, everything gone at {R['grove']['stop']:.1f} ms")


# ---------------------------------------------------------------- supervisord
class _UnixConn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path):
        super().__init__()
        self._path = path

    def make_connection(self, host):
        return _UnixConn(self._path)


def rpc():
    # The same XML-RPC calls supervisorctl makes, minus its Python start-up.
    return xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=_UnixTransport(supd_sock))


def supd_all_running():
    try:
        infos = rpc().supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Fault, http.client.HTTPException):
        return False
    return sum(1 for p in infos if p["statename"] == "RUNNING") == N


LOGTS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ (.*)$")


def supd_log_gap(name, new_pid):
    """ms between `exited: name` and `spawned: 'name' with pid new_pid` in supervisord's log."""
    exited = None
    with open(supd_log, errors="replace") as f:
        for line in f:
            m = LOGTS.match(line.rstrip("\n"))
            if not m:
                continue
            ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
            msg = m.group(2)
            if msg.startswith(f"exited: {name} "):
                exited = ts
            elif msg == f"spawned: '{name}' with pid {new_pid}" and exited is not None:
                return (ts - exited).total_seconds() * 1000.0
    return None


def bench_supervisord():
    global supd_proc
    os.makedirs(os.path.join(supd_dir, "childlogs"))
    with open(supd_conf, "w") as f:
        f.write(f"""[unix_http_server]
file={supd_sock}
chmod=0700

[supervisord]
logfile={supd_log}
pidfile={os.path.join(supd_dir, "supervisord.pid")}
childlogdir={os.path.join(supd_dir, "childlogs")}
nodaemon=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{supd_sock}
""")
        for i in range(1, N + 1):
            f.write(f"\n[program:s{i}]\ncommand=sleep 100000\nautostart=true\nstartsecs=0\n")
    print(f"\n== supervisord: starting {N} programs", flush=True)
    out = open(os.path.join(supd_dir, "stdout.log"), "w")
    t0 = now()
    supd_proc = subprocess.Popen([*PIN, SUPERVISORD, "-n", "-c", supd_conf], stdout=out,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
    spid = supd_proc.pid  # taskset execs, so this is supervisord itself
    with open(os.path.join(TMP, "supervisord.pid"), "w") as f:
        f.write(str(spid))

    def check_alive():
        if supd_proc.poll() is not None:
            raise BenchError(f"supervisord exited {supd_proc.returncode}; see its output:\n"
                             + open(os.path.join(supd_dir, "stdout.log")).read()[-2000:])

    # Watch /proc (no load on supervisord) until N sleeps exist, then ask it
    # over XML-RPC until it calls all N RUNNING.
    def n_children():
        check_alive()
        return len(unit_children(spid)) >= N
    wait_for(f"{N} supervisord children", n_children, 0.002)

    def all_running():
        check_alive()
        return supd_all_running()
    wait_for(f"supervisord to report {N} RUNNING", all_running, 0.01)
    R["supervisord"]["start"] = (now() - t0) * 1000.0
    log(f"all RUNNING after {R['supervisord']['start']:.1f} ms; supervisord pid {spid} "
        f"(CPUs {cpus_allowed(spid)})")

    time.sleep(1.0)
    R["supervisord"]["rss"] = vmrss_bytes(spid)
    log(f"supervisord VmRSS {R['supervisord']['rss'] / 1e6:.1f} MB")

    lat, loggap = [], []
    for i in range(REPS):
        name = f"s{i % N + 1}"
        info = rpc().supervisor.getProcessInfo(name)
        if info["statename"] != "RUNNING":
            raise BenchError(f"supervisord reports {name} {info['statename']}")
        old = info["pid"]
        ms, new = measure_restart(spid, old)

        def back():
            check_alive()
            p = rpc().supervisor.getProcessInfo(name)
            return p["statename"] == "RUNNING" and p["pid"] == new
        wait_for(f"supervisord to report {name} RUNNING again", back, 0.01)
        gap = supd_log_gap(name, new)
        lat.append(ms)
        if gap is not None:
            loggap.append(gap)
        log(f"restart {name}: pid {old} -> {new}: {ms:.1f} ms observed, "
            f"{'?' if gap is None else f'{gap:.0f}'} ms in supervisord's log")
        time.sleep(0.2)
    R["supervisord"]["restart"] = median(lat)
    R["supervisord"]["restart_log"] = median(loggap)

    pids = unit_children(spid)
    t0 = now()
    rpc().supervisor.shutdown()
    deadline = now() + TMO
    while supd_proc.poll() is None:
        if now() > deadline:
            raise BenchError(f"supervisord still running {TMO:.0f} s after shutdown")
        time.sleep(0.001)
    wait_for("supervisord's programs to be gone", lambda: not any(alive(p) for p in pids), 0.001)
    R["supervisord"]["stop"] = (now() - t0) * 1000.0
    log(f"shutdown: everything gone at {R['supervisord']['stop']:.1f} ms")


# ---------------------------------------------------------------- report
def report():
    g, s = R["grove"], R["supervisord"]

    def ms(v):
        return "n/a" if v is None else f"{v:.1f} ms"

    def ratio(a, b):
        return "n/a" if a is None or b is None or b == 0 else f"{a / b:.1f}x"

    def goal(ok, text):
        return f"{text}: {'met' if ok else 'MISSED'}" if ok is not None else f"{text}: n/a"

    start_ratio = s["start"] / g["start"] if g.get("start") else None
    rows = [
        ("metric", "grove", "supervisord", "ratio (sup/grove)", "goal"),
        (f"start {N} units", ms(g.get("start")), ms(s.get("start")), ratio(s.get("start"), g.get("start")),
         goal(None if start_ratio is None else start_ratio >= 10, ">= 10x faster")),
        ("supervisor RSS", f"{g['rss'] / 1e6:.1f} MB", f"{s['rss'] / 1e6:.1f} MB", ratio(s["rss"], g["rss"]),
         goal(g["rss"] / 1e6 < 15, "grove < 15 MB")),
        (f"grove's {N} shims (PSS, the units' parents)", f"{g.get('shims', 0) / 1e6:.1f} MB", "none (units are its children)", "", ""),
        (f"restart, median of {REPS} (/proc poll)", ms(g.get("restart")), ms(s.get("restart")),
         ratio(s.get("restart"), g.get("restart")),
         goal(None if g.get("restart") is None else g["restart"] < 20, "grove < 20 ms")),
        ("restart, median (own log)", ms(g.get("restart_log")), ms(s.get("restart_log")),
         ratio(s.get("restart_log"), g.get("restart_log")), ""),
        (f"stop all {N}", ms(g.get("stop")), ms(s.get("stop")), ratio(s.get("stop"), g.get("stop")), ""),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    print()
    for j, r in enumerate(rows):
        print(" | ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
        if j == 0:
            print("-+-".join("-" * w for w in widths))
    print()
    print("notes:")
    print(f"  - {CPUS} CPU(s); " + (f"both supervisors (and their units) pinned with `taskset -c {PIN_CPU}`"
                                    if PIN else "no taskset: nothing pinned")
          + (f", the measuring poller on CPU {POLL_CPU}" if POLL_CPU else ""))
    print("  - supervisord runs with startsecs=0 (default 1 s would delay RUNNING by 1 s); all else default")
    print("  - grove start = wall time of `grove up -d` (returns once all are running);"
          " supervisord start = launch until getAllProcessInfo (what `supervisorctl status` calls,"
          " over XML-RPC directly, so no supervisorctl start-up cost) shows all RUNNING")
    print("  - restart (/proc poll) = kill -9 until a new `sleep 100000` child of the supervisor exists"
          " (1 ms poll); own log = grove events exited->started, supervisord.log exited->spawned (ms stamps)")
    print("  - stop = grove down / XML-RPC supervisor.shutdown until the supervisor and every unit are gone")


def cleanup():
    if grove_pid and alive(grove_pid):
        try:
            grove("down", timeout=60, check=False)
        except Exception:
            pass
    if supd_proc is not None and supd_proc.poll() is None:
        try:
            rpc().supervisor.shutdown()
            supd_proc.wait(timeout=30)
        except Exception:
            pass  # the shell's trap kills it


try:
    bench_grove()
    bench_supervisord()
    report()
except BenchError as e:
    print(f"bench: {e}", file=sys.stderr)
    sys.exit(1)
except subprocess.TimeoutExpired as e:
    print(f"bench: gave up: {e}", file=sys.stderr)
    sys.exit(1)
except KeyboardInterrupt:
    print("bench: interrupted; cleaning up", file=sys.stderr)
    sys.exit(130)
finally:
    cleanup()
PY
