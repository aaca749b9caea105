#!/usr/bin/env bash
# keel-server load benchmark (not a test): N devices polling the hawkBit DDI endpoint on loopback,
# driven by wrk with one TargetToken per device; then durable feedback POSTs.
#
#   bench/server-load.sh [DEVICES] [CONNECTIONS] [SECONDS]
#
# Prints polls/s and latency percentiles; results go to docs/benchmarks.md ("Server").
set -euo pipefail
DEVICES=${1:-1000}
CONNECTIONS=${2:-64}
SECONDS_PER_RUN=${3:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }

cargo build --release -p keel-server --manifest-path "$ROOT/Cargo.toml" >&2
SERVER="$ROOT/target/release/keel-server"
WORK=$(mktemp -d /tmp/keel-bench.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
"$SERVER" --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" --create-default-tenant \
    --poll-interval 00:01:00 >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null; wait $SERVER_PID 2>/dev/null; rm -rf "$WORK"' EXIT
python3 - "$BASE" <<'PY'
import sys, time, urllib.request
for _ in range(200):
    try:
        urllib.request.urlopen(sys.argv[1] + "/rest/v1/openapi.json"); break
    except Exception:
        time.sleep(0.1)
PY

# Register the devices (token-NNNNN-keel-bench) and give every second one an open action, so polls
# return both the idle answer and a deploymentBase link.
python3 - "$BASE" "$(cat "$WORK/data/admin.token")" "$DEVICES" <<'PY'
import http.client, json, sys, urllib.parse
base, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urllib.parse.urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port)
def call(method, path, body=None, raw=None, ctype="application/json"):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    c.request(method, path, body=data, headers={"Authorization": "Bearer " + token, "Content-Type": ctype})
    r = c.getresponse(); text = r.read()
    assert r.status < 300, (method, path, r.status, text)
    return json.loads(text) if text else None
for i in range(n):
    call("POST", "/rest/v1/targets", {"controllerId": "dev%05d" % i, "securityToken": "token-%05d-keel-bench" % i})
m = call("POST", "/rest/v1/softwaremodules", {"name": "bench", "version": "1"})
call("POST", "/rest/v1/softwaremodules/%d/artifacts?filename=bench.swu" % m["id"], raw=b"x" * 4096, ctype="application/octet-stream")
s = call("POST", "/rest/v1/distributionsets", {"name": "bench", "version": "1", "modules": [m["id"]]})
r = call("POST", "/rest/v1/distributionsets/%d/assignedTargets" % s["id"], {"targets": ["dev%05d" % i for i in range(0, n, 2)]})
PY

cat >"$WORK/poll.lua" <<LUA
local n = $DEVICES
local counter = 0
request = function()
  counter = counter + 1
  local i = (counter * 7919) % n
  return wrk.format("GET", string.format("/default/controller/v1/dev%05d", i),
    { ["Authorization"] = string.format("TargetToken token-%05d-keel-bench", i) })
end
LUA

# Feedback to the open actions (even devices): durable writes, one fsync per request.
python3 - "$BASE" "$DEVICES" >"$WORK/actions.lua" <<'PY'
import http.client, json, sys, urllib.parse
base, n = sys.argv[1], int(sys.argv[2])
u = urllib.parse.urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port)
pairs = []
for i in range(0, n, 2):
    c.request("GET", "/default/controller/v1/dev%05d" % i, headers={"Authorization": "TargetToken token-%05d-keel-bench" % i})
    r = c.getresponse(); body = json.loads(r.read())
    href = body["_links"]["deploymentBase"]["href"]
    pairs.append((i, int(href.split("/deploymentBase/")[1].split("?")[0])))
print("local targets = {" + ",".join("{%d,%d}" % p for p in pairs) + "}")
PY
cat >>"$WORK/actions.lua" <<'LUA'
local counter = 0
local body = '{"status":{"execution":"proceeding","result":{"finished":"none","progress":{"cnt":1,"of":2}},"details":["bench"]}}'
request = function()
  counter = counter + 1
  local t = targets[(counter % #targets) + 1]
  return wrk.format("POST", string.format("/default/controller/v1/dev%05d/deploymentBase/%d/feedback", t[1], t[2]),
    { ["Authorization"] = string.format("TargetToken token-%05d-keel-bench", t[1]), ["Content-Type"] = "application/json" }, body)
end
LUA

echo "== poll: $DEVICES devices, $CONNECTIONS connections, ${SECONDS_PER_RUN}s (half the devices have an open action)"
wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/poll.lua" "$BASE" | tee "$WORK/poll.txt"
echo "== feedback POST (durable, synchronous=FULL): $CONNECTIONS connections, ${SECONDS_PER_RUN}s"
wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/actions.lua" "$BASE" | tee "$WORK/feedback.txt"
echo "== summary"
for run in poll feedback; do
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$run.txt")
  p50=$(awk '$1=="50%" {print $2}' "$WORK/$run.txt")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/$run.txt")
  errors=$(grep -E "Non-2xx|Socket errors" "$WORK/$run.txt" || true)
  echo "$run: ${rps} req/s, p50 ${p50}, p99 ${p99} ${errors}"
done
echo "server RSS after the runs: $(ps -o rss= -p $SERVER_PID) KiB"
