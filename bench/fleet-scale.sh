#!/usr/bin/env bash
# Fleet-scale benchmark of keel-server (not a test): simulated DDI devices from keel-fleet
# (crates/fleet/src/lib.rs) against one release keel-server, on SQLite and on PostgreSQL.
#
#   bench/fleet-scale.sh [sqlite|postgres|both] [OFFERED_POLLS_PER_S] [ROLLOUT_DEVICES] [PHASES]
#
# For each backend:
#   1. steady polling: 10 000 and 100 000 registered devices, each polling at the interval that
#      offers OFFERED_POLLS_PER_S in total (devices / interval), for two intervals (at least 20 s);
#      reports achieved polls/s vs offered and the poll latency percentiles seen by the devices;
#   2. rollout: ROLLOUT_DEVICES devices (default 100 000) poll every 30 s; one rollout (one group,
#      forced) of a 64 KiB artifact; each device fetches the deployment, HEADs the artifact, posts
#      `proceeding` and `closed/success` (durable); time from "start" to the rollout's `finished`.
# Devices are registered directly in the database (keel-fleet register-sql). PostgreSQL: a private
# cluster (Debian's postgresql, initdb in a temporary directory, Unix socket only, fsync on).
# PHASES: "steady rollout" (default), or one of them. Results go to docs/benchmarks.md ("Fleet scale").
set -euo pipefail
BACKENDS=${1:-both}
OFFERED=${2:-3000}
ROLLOUT_DEVICES=${3:-100000}
PHASES=${4:-steady rollout}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
command -v sqlite3 >/dev/null || { echo "sqlite3 is required (apt-get install sqlite3)" >&2; exit 1; }

cargo build --release -p keel-server -p keel-fleet --bin keel-server --bin keel-fleet \
    --manifest-path "$ROOT/Cargo.toml" >&2
SERVER="$ROOT/target/release/keel-server"
FLEET="$ROOT/target/release/keel-fleet"
WORK=$(mktemp -d /tmp/keel-fleet-bench.XXXXXX)
chmod 755 "$WORK"
SERVER_PID=
PG_PID=
PG_BIN=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    [ -n "$PG_PID" ] && as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_postgres() {
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    mkdir -p "$WORK/pg"
    [ "$(id -u)" = 0 ] && chown postgres: "$WORK/pg"
    as_pg "$PG_BIN/initdb" -D "$WORK/pg/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
    as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w \
        -o "-k $WORK/pg -h '' -c fsync=on -c max_connections=100" start >/dev/null
    PG_PID=1
}

# database_for NAME: prints the URL of a fresh database (PostgreSQL) or nothing (SQLite).
database_for() {
    if [ "$1" = postgres ]; then
        "$PG_BIN/psql" -X -q -h "$WORK/pg" -U postgres -d postgres -c "CREATE DATABASE $2" >/dev/null
        echo "postgres://postgres@localhost/$2?host=$WORK/pg"
    fi
}

run_sql() { # BACKEND DATA_DIR URL < SQL
    if [ "$1" = postgres ]; then
        local db=${3%%\?*}; db=${db##*/}
        "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK/pg" -U postgres -d "$db" >/dev/null
    else
        (echo ".timeout 30000"; cat) | sqlite3 "$2/keel.db" >/dev/null
    fi
}

query() { # BACKEND DATA_DIR URL SQL
    if [ "$1" = postgres ]; then
        local db=${3%%\?*}; db=${db##*/}
        "$PG_BIN/psql" -X -qAt -h "$WORK/pg" -U postgres -d "$db" -c "$4"
    else
        sqlite3 -cmd ".timeout 30000" "$2/keel.db" "$4"
    fi
}

start_server() { # DATA_DIR URL POLL_INTERVAL
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    BASE="http://127.0.0.1:$port"
    local db=()
    [ -n "$2" ] && db=(--database-url "$2")
    "$SERVER" --data-dir "$1" "${db[@]}" --listen "127.0.0.1:$port" --create-default-tenant \
        --poll-interval "$3" >"$1.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 300); do
        curl -sf "$BASE/rest/v1/openapi.json" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "keel-server did not start:" >&2; cat "$1.log" >&2; exit 1
}

stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }

api() { # METHOD PATH [curl args...]
    local method=$1 path=$2; shift 2
    curl -sf -X "$method" -H "Authorization: Bearer $ADMIN" "$BASE$path" "$@"
}

# register BACKEND DATA_DIR URL N: N devices fleet000000.. with derived tokens and the tag "fleet".
register() {
    local started=$(date +%s.%N)
    "$FLEET" register-sql --devices "$4" --prefix fleet --token-seed bench --tag fleet | run_sql "$1" "$2" "$3"
    echo "registered $4 devices in $(python3 -c "import time; print(round(time.time()-$started, 1))") s (direct SQL)"
}

summary() { # REPORT_JSON LABEL
    python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); label = sys.argv[2]
p = r["latency"].get("poll", {})
ms = lambda us: "%.1f ms" % (us / 1000.0)
print("%s: devices %d, offered %.0f polls/s, achieved %.0f polls/s (%.2fx), poll p50 %s p99 %s p99.9 %s max %s, errors %d" % (
    label, r["devices"], r["offered_polls_per_s"] or 0, r["polls_per_s"],
    r["polls_per_s"] / (r["offered_polls_per_s"] or 1), ms(p.get("p50_us", 0)), ms(p.get("p99_us", 0)),
    ms(p.get("p999_us", 0)), ms(p.get("max_us", 0)), r["errors"]))
PY
}

steady() { # BACKEND DEVICES
    local backend=$1 devices=$2
    local dir="$WORK/$backend-$devices" url
    url=$(database_for "$backend" "steady_$devices")
    start_server "$dir" "$url" 00:05:00
    ADMIN=$(cat "$dir/admin.token")
    register "$backend" "$dir" "$url" "$devices"
    local interval duration
    interval=$(python3 -c "print($devices / $OFFERED)")
    duration=$(python3 -c "print(max(20.0, 2 * $devices / $OFFERED))")
    echo "== $backend: $devices devices, every ${interval}s (offered $OFFERED polls/s), ${duration}s"
    "$FLEET" run --server "$BASE" --devices "$devices" --prefix fleet --token-seed bench \
        --interval "$interval" --duration "$duration" --download head --max-in-flight 256 \
        >"$WORK/steady-$backend-$devices.json"
    summary "$WORK/steady-$backend-$devices.json" "$backend steady"
    echo "server RSS: $(( $(ps -o rss= -p "$SERVER_PID") / 1024 )) MiB"
    stop_server
}

rollout() { # BACKEND DEVICES
    local backend=$1 devices=$2
    local dir="$WORK/$backend-rollout" url
    url=$(database_for "$backend" rollout)
    start_server "$dir" "$url" 00:00:30
    ADMIN=$(cat "$dir/admin.token")
    register "$backend" "$dir" "$url" "$devices"
    head -c 65536 /dev/urandom >"$WORK/os.swu"
    local module set rollout_id
    module=$(api POST /rest/v1/softwaremodules -H 'Content-Type: application/json' \
        -d '{"name":"os","version":"2.0"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    api POST "/rest/v1/softwaremodules/$module/artifacts?filename=os.swu" \
        -H 'Content-Type: application/octet-stream' --data-binary @"$WORK/os.swu" >/dev/null
    set=$(api POST /rest/v1/distributionsets -H 'Content-Type: application/json' \
        -d "{\"name\":\"os\",\"version\":\"2.0\",\"modules\":[$module]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    rollout_id=$(api POST /rest/v1/rollouts -H 'Content-Type: application/json' \
        -d "{\"name\":\"all\",\"distributionSetId\":$set,\"tag\":\"fleet\",\"amountGroups\":1,\"type\":\"forced\"}" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    # The devices poll every 30 s (the server's config.polling.sleep), spread over the interval.
    "$FLEET" run --server "$BASE" --devices "$devices" --prefix fleet --token-seed bench \
        --download head --max-in-flight 256 --until-closed "$devices" --duration 900 \
        >"$WORK/rollout-$backend.json" &
    local fleet_pid=$!
    sleep 35 # every device has polled once: the fleet is in its steady state
    local started
    started=$(date +%s.%N)
    api POST "/rest/v1/rollouts/$rollout_id/start" >/dev/null
    local status=running
    while [ "$status" != finished ]; do
        sleep 1
        status=$(api GET "/rest/v1/rollouts/$rollout_id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
        if ! kill -0 "$fleet_pid" 2>/dev/null && [ "$status" != finished ]; then
            sleep 2
            status=$(api GET "/rest/v1/rollouts/$rollout_id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
            [ "$status" = finished ] || { echo "fleet ended, rollout $status" >&2; break; }
        fi
    done
    local ended
    ended=$(date +%s.%N)
    wait "$fleet_pid" || true
    local created first_close last_close
    created=$(query "$backend" "$dir" "$url" "SELECT MAX(created_at) - MIN(created_at) FROM actions")
    echo "== $backend rollout: $devices devices, poll interval 30 s"
    python3 - "$WORK/rollout-$backend.json" "$started" "$ended" "$created" "$devices" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); started, ended = float(sys.argv[2]), float(sys.argv[3])
n = int(sys.argv[5]); secs = ended - started
print("rollout to %d devices: %.1f s from start to finished (%.0f devices/s); group start (actions created) within %s ms"
      % (n, secs, n / secs, sys.argv[4]))
lat = r["latency"]
for kind in ("poll", "deployment", "download", "feedback"):
    if kind in lat:
        print("  %-10s %7d requests, p50 %.1f ms, p99 %.1f ms" % (kind, lat[kind]["count"], lat[kind]["p50_us"] / 1e3, lat[kind]["p99_us"] / 1e3))
print("  closed success %d, closed already (410 after retry) %d, errors %d" % (r["closed_success"], r["closed_already"], r["errors"]))
PY
    query "$backend" "$dir" "$url" "SELECT status, COUNT(*) FROM actions GROUP BY status"
    stop_server
}

for backend in sqlite postgres; do
    [ "$BACKENDS" = both ] || [ "$BACKENDS" = "$backend" ] || continue
    [ "$backend" = postgres ] && [ -z "$PG_PID" ] && start_postgres
    if [[ " $PHASES " == *" steady "* ]]; then
        steady "$backend" 10000
        steady "$backend" 100000
    fi
    if [[ " $PHASES " == *" rollout "* ]]; then
        rollout "$backend" "$ROLLOUT_DEVICES"
    fi
done
