#!/usr/bin/env bash
# How long `grove up -d` takes for the Django-shaped stack of issue 28 (PostgreSQL, RabbitMQ,
# and an app that waits for both to be healthy), cold (fresh data folders: initdb, a new
# RabbitMQ node) and warm (the data kept from the last run), and where the time goes:
#   - each server's own boot: its process start to the line where it says it is ready
#     (PostgreSQL: "database system is ready", RabbitMQ: "Server startup complete");
#   - grove's share after that: to its `healthy` event (the readiness probe in the server's
#     protocol, then the roles, databases and vhosts it creates);
#   - the app's start after both are healthy.
# Medians of ROUNDS rounds of each. The stack's units start as soon as their own
# dependencies allow, so the two servers boot at the same time and `up -d` takes about the
# slower of the two plus the app.
#
#   cargo build --release -p grove && bench/first-start/run.sh
#   ROUNDS=5 bench/first-start/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
GROVE_BIN=${GROVE_BIN:-$PWD/target/release/grove}
ROUNDS=${ROUNDS:-3}
die() { echo "bench: $*" >&2; exit 1; }
[[ -x "$GROVE_BIN" ]] || die "grove binary not found at $GROVE_BIN; build it: cargo build --release -p grove (or set GROVE_BIN)"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a whole number (got '$ROUNDS')"
for t in rabbitmq-server:rabbitmq-server initdb:postgresql python3:python3; do
    command -v "${t%%:*}" >/dev/null || [[ -x /usr/lib/postgresql/*/bin/initdb ]] \
        || die "missing ${t#*:}: sudo apt-get install -y ${t#*:}"
done

WORK="$(mktemp -d /tmp/grove-first-start.XXXXXX)"
chmod 755 "$WORK"
cleanup() {
    (cd "$WORK" && "$GROVE_BIN" down >/dev/null 2>&1) || true
    rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/grove.toml" <<'TOML'
[stack]
name = "firststart"

[edge]
listen = []

[services.db]
recipe = "postgres"

[services.mq]
recipe = "rabbitmq"

[services.app]
command = "python3 -m http.server ${PORT} --bind 127.0.0.1"
depends_on = { db = "healthy", mq = "healthy" }
health = { http = "/", interval = "1s" }
env = { DATABASE_URL = "${db.url}/app", BROKER_URL = "${mq.url}" }
TOML

# Milliseconds since the epoch of a grove stamp (2026-12-03T12:16:09.353Z).
ms() { date -u -d "$1" +%s%3N; }

# One `up -d`: its wall time and the phases from the events and the servers' logs, in ms.
one() {
    local start end ev
    cd "$WORK"
    start=$(date +%s%3N)
    "$GROVE_BIN" up -d --wait-timeout 120s >/dev/null
    end=$(date +%s%3N)
    ev=$("$GROVE_BIN" events --json -n 200)
    local t
    t() { # the last `kind` event of `unit`, in ms
        echo "$ev" | python3 -c '
import json, sys
u, k = sys.argv[1], sys.argv[2]
ts = [e["ts_ms"] for e in map(json.loads, sys.stdin) if e.get("unit") == u and e["kind"] == k]
print(ts[-1] if ts else 0)' "$1" "$2"
    }
    # When the server last said it is ready, as grove stamped the line in its log.
    ready() { ms "$(grep -a "$2" ".grove/logs/$1.log" | tail -1 | cut -d' ' -f1)"; }
    local db_s db_r db_h mq_s mq_r mq_h app_h
    db_s=$(t db started) db_h=$(t db healthy) mq_s=$(t mq started) mq_h=$(t mq healthy)
    app_h=$(t app healthy)
    db_r=$(ready db "database system is ready to accept connections")
    mq_r=$(ready mq "Server startup complete")
    local both=$((mq_h > db_h ? mq_h : db_h))
    echo "$((end - start)) $((db_r - db_s)) $((db_h - db_r)) $((mq_r - mq_s)) $((mq_h - mq_r)) $((app_h - both))"
    "$GROVE_BIN" down >/dev/null
    cd - >/dev/null
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for kind in cold warm; do
    : >"$WORK/$kind.txt"
done
for ((r = 1; r <= ROUNDS; r++)); do
    rm -rf "$WORK/.grove/data"
    one >>"$WORK/cold.txt"
    one >>"$WORK/warm.txt"
done

echo "grove up -d of PostgreSQL + RabbitMQ + an app waiting for both (medians of $ROUNDS, ms)"
printf "%-6s %10s %10s %10s %10s %10s %10s\n" "" "up -d" "pg boot" "pg grove" "mq boot" "mq grove" "app"
for kind in cold warm; do
    cols=()
    for c in 1 2 3 4 5 6; do
        cols+=("$(cut -d' ' -f$c "$WORK/$kind.txt" | median)")
    done
    printf "%-6s %10s %10s %10s %10s %10s %10s\n" "$kind" "${cols[@]}"
done
echo "pg/mq boot: the server's process start to its ready line; grove: from there to grove's"
echo "healthy event (probe, then roles/databases/vhosts created); app: both healthy to the app healthy"
