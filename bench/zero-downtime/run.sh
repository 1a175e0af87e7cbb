#!/usr/bin/env bash
# Failed requests and the longest request through every routine change, under load: the
# rows of issue 25 (restarts, reloads, scaling, a crash) and issue 22 (grove killed, grove
# upgraded). The goal in every row is 0 failed, as kamal-proxy and Kubernetes' rolling
# updates promise. Usage: cargo build --release -p grove && bench/zero-downtime/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
GROVE_BIN="${GROVE_BIN:-$root/target/release/grove}"
SECONDS_PER_ROW="${SECONDS_PER_ROW:-4}"
CLIENTS="${CLIENTS:-4}"
if [ ! -x "$GROVE_BIN" ]; then
  echo "no grove binary at $GROVE_BIN: cargo build --release -p grove (or set GROVE_BIN)" >&2
  exit 1
fi
work="$(mktemp -d)"
cleanup() {
  (cd "$work" && "$GROVE_BIN" down >/dev/null 2>&1) || true
  rm -rf "$work"
}
trap cleanup EXIT
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
g() { (cd "$work" && "$GROVE_BIN" "$@"); }

stack() { # replicas version
  cat >"$work/grove.toml" <<TOML
[stack]
name = "bench-zero-downtime"

[edge]
listen = ["http://127.0.0.1:$port"]

[services.web]
command = "python3 $here/app.py"
replicas = $1
env = { VERSION = "$2" }
health = { http = "/", interval = "200ms" }
route = {}
TOML
}

row() { # name, then the change as a command
  local name="$1"; shift
  local out="$work/load.json"
  python3 "$here/load.py" "$port" "$SECONDS_PER_ROW" "$CLIENTS" >"$out" &
  local load=$!
  sleep 1
  "$@" >/dev/null 2>&1 || echo "  ($name: the change itself failed)" >&2
  wait "$load"
  python3 - "$name" "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
print(f"| {sys.argv[1]} | {r['ok'] + r['failed']} | {r['failed']} | {r['longest_ms']} ms |")
PY
}

pid_of() { g ps --json | python3 -c "import json,sys; u=[x for x in json.load(sys.stdin)['units'] if x['name']=='$1']; print(u[0]['pid'])"; }
kill_only_replica() { kill -9 "$(pid_of web)"; }
kill_grove() { kill -9 "$(g ps --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')"; sleep 0.5; g up -d; }
reload_to() { stack "$1" "$2"; g reload --wait; }

echo "grove: $("$GROVE_BIN" --version); $CLIENTS clients (half kept-alive), ${SECONDS_PER_ROW} s per row"
echo
echo "| change | requests | failed | longest |"
echo "|---|---|---|---|"
stack 1 v1; g up -d >/dev/null
row "grove restart web, 1 replica" g restart web --wait
reload_to 2 v1 >/dev/null
row "grove restart web, 2 replicas" g restart web --wait
row "reload changing web's env, 2 replicas" reload_to 2 v2
row "reload from 2 replicas to 1" reload_to 1 v2
reload_to 3 v2 >/dev/null
row "reload from 3 replicas to 2" reload_to 2 v2
reload_to 1 v2 >/dev/null
row "kill -9 of the only replica" kill_only_replica
row "kill -9 of grove, then grove up -d" kill_grove
row "grove upgrade" g upgrade
