#!/usr/bin/env bash
# Login-flood benchmark of keel-server (not a test; loopback only): simulated devices poll the DDI
# API while 16 clients flood `/ui/login` with wrong passwords (8 connections) and `/rest/v1` with
# wrong Bearer tokens (8 connections). Prints the server's peak RSS and the DDI poll latency
# (p50/p99) idle and under the flood; results go to docs/benchmarks.md ("Login flood").
#
#   bench/login-flood.sh [DEVICES] [SECONDS] [MODES]
#
# DEVICES devices (default 1000) poll every 5 s (keel-fleet); SECONDS (default 30) of flood.
# MODES (default "throttled unthrottled"): `throttled` is the server as shipped; `unthrottled`
# runs it with the hidden --no-auth-throttle, so every guess reaches the password check and only
# the bounded argon2 pool protects memory and the device API.
set -euo pipefail
DEVICES=${1:-1000}
SECONDS_FLOOD=${2:-30}
MODES=${3:-throttled unthrottled}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
for tool in wrk sqlite3 curl python3; do
    command -v "$tool" >/dev/null || { echo "$tool is required (apt-get install $tool)" >&2; exit 1; }
done

# PROFILE=dev uses the test build instead (dependencies at opt-level 2, keel's own code unoptimised).
PROFILE=${PROFILE:-release}
cargo build --profile "$PROFILE" -p keel-server -p keel-fleet --bin keel-server --bin keel-fleet \
    --manifest-path "$ROOT/Cargo.toml" >&2
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$PROFILE; [ "$PROFILE" = dev ] && OUT=debug
SERVER="$TARGET/$OUT/keel-server"
FLEET="$TARGET/$OUT/keel-fleet"
WORK=$(mktemp -d /tmp/keel-login-flood.XXXXXX)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

start_server() { # DATA_DIR EXTRA_FLAGS...
    local dir=$1; shift
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    BASE="http://127.0.0.1:$port"
    "$SERVER" --data-dir "$dir" --listen "127.0.0.1:$port" --create-default-tenant \
        --poll-interval 00:00:05 "$@" >"$dir.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 300); do
        curl -sf "$BASE/rest/v1/openapi.json" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "keel-server did not start:" >&2; cat "$dir.log" >&2; exit 1
}

stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }

rss_mib() { awk -v f="$1" '$1 == f":" {printf "%.0f", $2 / 1024}' "/proc/$SERVER_PID/status"; }

# A dashboard account `operator` (the flood guesses its password half of the time).
create_account() { # BASE ADMIN_TOKEN
    python3 - "$1" "$2" <<'PY'
import http.client, re, sys, urllib.parse
base, token = sys.argv[1], sys.argv[2]
u = urllib.parse.urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port)
cookies = {}
def send(method, path, fields=None):
    body = urllib.parse.urlencode(fields) if fields else None
    headers = {"Cookie": "; ".join("%s=%s" % kv for kv in cookies.items())}
    if body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse(); text = r.read().decode()
    for k, v in r.getheaders():
        if k.lower() == "set-cookie":
            name, value = v.split(";")[0].split("=", 1)
            cookies[name] = value
    return r.status, text
csrf = lambda text: re.search(r'name="csrf" value="([^"]+)"', text).group(1)
_, form = send("GET", "/ui/login")
status, _ = send("POST", "/ui/login", {"csrf": csrf(form), "token": token, "tenant": "default"})
assert status == 303, status
_, users = send("GET", "/ui/users")
status, text = send("POST", "/ui/users", {"csrf": csrf(users), "user": "operator",
                                          "password": "a long and secret password", "role": "operator"})
assert status == 303, (status, text)
PY
}

# Both floods count the answers by status (wrk threads keep their own tables; done() sums them).
cat >"$WORK/count.lua" <<'LUA'
local threads = {}
statuses = {}
function setup(thread) table.insert(threads, thread) end
response = function(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
done = function(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do total[k] = (total[k] or 0) + v end
  end
  for k, v in pairs(total) do io.write(string.format("status %d: %d\n", k, v)) end
end
LUA
# Wrong passwords: every second guess for the real account `operator`, the others spray new user
# names. The login CSRF nonce is double-submit (cookie = form field), so a flood sets both.
cat "$WORK/count.lua" - >"$WORK/login.lua" <<'LUA'
local counter = 0
request = function()
  counter = counter + 1
  local user = (counter % 2 == 0) and "operator" or ("user" .. counter)
  local body = "csrf=flood&tenant=default&user=" .. user .. "&password=guess" .. counter
  return wrk.format("POST", "/ui/login",
    { ["Content-Type"] = "application/x-www-form-urlencoded", ["Cookie"] = "keel_login=flood" }, body)
end
LUA
# Wrong Bearer tokens, a new one each time.
cat "$WORK/count.lua" - >"$WORK/api.lua" <<'LUA'
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/rest/v1/targets", { ["Authorization"] = "Bearer not-a-token-" .. counter })
end
LUA

fleet_summary() { # REPORT_JSON
    python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = r["latency"].get("poll", {})
print("%.0f polls/s, p50 %.2f ms, p99 %.2f ms, max %.1f ms, errors %d" % (
    r["polls_per_s"], p.get("p50_us", 0) / 1000, p.get("p99_us", 0) / 1000, p.get("max_us", 0) / 1000, r["errors"]))
PY
}

statuses() { grep '^status' "$1" | sort | tr '\n' ' '; }
requests() { awk '/requests in/ {print $1}' "$1"; }

for mode in $MODES; do
    dir="$WORK/$mode"
    flags=()
    [ "$mode" = unthrottled ] && flags=(--no-auth-throttle)
    start_server "$dir" "${flags[@]}"
    create_account "$BASE" "$(cat "$dir/admin.token")"
    "$FLEET" register-sql --devices "$DEVICES" --prefix flood --token-seed bench \
        | (echo ".timeout 30000"; cat) | sqlite3 "$dir/keel.db" >/dev/null
    fleet=("$FLEET" run --server "$BASE" --devices "$DEVICES" --prefix flood --token-seed bench
           --interval 5 --max-in-flight 64)
    echo "== $mode: $DEVICES devices polling every 5 s; idle ${SECONDS_FLOOD}s"
    "${fleet[@]}" --duration "$SECONDS_FLOOD" >"$WORK/$mode-idle.json"
    idle_rss=$(rss_mib VmRSS)
    echo "== $mode: flood: 8 connections on /ui/login + 8 on /rest/v1, ${SECONDS_FLOOD}s"
    wrk -t1 -c8 -d"${SECONDS_FLOOD}s" -s "$WORK/login.lua" "$BASE" >"$WORK/$mode-login.txt" &
    login_pid=$!
    wrk -t1 -c8 -d"${SECONDS_FLOOD}s" -s "$WORK/api.lua" "$BASE" >"$WORK/$mode-api.txt" &
    api_pid=$!
    "${fleet[@]}" --duration "$SECONDS_FLOOD" >"$WORK/$mode-flood.json"
    wait "$login_pid" "$api_pid"
    echo "$mode idle:  poll $(fleet_summary "$WORK/$mode-idle.json"); server RSS ${idle_rss} MiB"
    echo "$mode flood: poll $(fleet_summary "$WORK/$mode-flood.json")"
    echo "$mode flood: /ui/login $(requests "$WORK/$mode-login.txt") requests: $(statuses "$WORK/$mode-login.txt")"
    echo "$mode flood: /rest/v1 $(requests "$WORK/$mode-api.txt") requests: $(statuses "$WORK/$mode-api.txt")"
    echo "$mode: server RSS peak (VmHWM) $(rss_mib VmHWM) MiB, after the flood $(rss_mib VmRSS) MiB"
    stop_server
done
