#!/usr/bin/env bash
# keel-server dashboard benchmark (not a test): page latency with a large fleet, measured with wrk.
#
#   bench/dashboard-bench.sh [DEVICES] [CONNECTIONS] [SECONDS]
#
# Seeds DEVICES devices (10 tags, attributes on every tenth, half with an update assigned, of which
# some report success or failure), a rollout over one tag, logs in to the dashboard and measures the
# fleet overview (first, middle and last page, filters), a device page and a rollout page.
# Results go to docs/benchmarks.md ("Dashboard").
set -euo pipefail
DEVICES=${1:-10000}
CONNECTIONS=${2:-4}
SECONDS_PER_RUN=${3:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }

cargo build --release -p keel-server --manifest-path "$ROOT/Cargo.toml" >&2
SERVER="$ROOT/target/release/keel-server"
WORK=$(mktemp -d /tmp/keel-dashboard-bench.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
"$SERVER" --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" --create-default-tenant \
    --poll-interval 00:01:00 --poll-flush-interval-ms 500 >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null; wait $SERVER_PID 2>/dev/null; rm -rf "$WORK"' EXIT
python3 - "$BASE" <<'PY'
import sys, time, urllib.request
for _ in range(300):
    try:
        urllib.request.urlopen(sys.argv[1] + "/rest/v1/openapi.json"); break
    except Exception:
        time.sleep(0.1)
PY

echo "== seeding $DEVICES devices" >&2
START=$(date +%s)
python3 - "$BASE" "$(cat "$WORK/data/admin.token")" "$DEVICES" "$WORK/cookie" <<'PY'
import http.client, json, sys, urllib.parse, re
base, token, n, cookie_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
u = urllib.parse.urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port)
def call(method, path, body=None, raw=None, ctype="application/json", auth=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    c.request(method, path, body=data, headers={"Authorization": auth or ("Bearer " + token), "Content-Type": ctype})
    r = c.getresponse(); text = r.read()
    assert r.status < 300, (method, path, r.status, text)
    return json.loads(text) if text else None
def dev_token(i): return "token-%05d-keel-bench" % i
for i in range(n):
    call("POST", "/rest/v1/targets", {"controllerId": "dev%05d" % i, "securityToken": dev_token(i), "tags": ["zone-%d" % (i % 10)]})
for i in range(0, n, 10):
    call("PUT", "/default/controller/v1/dev%05d/configData" % i, {"data": {"hw": "rev-%s" % "abc"[i % 3], "slot.a.version": "1.%d" % (i % 7)}}, auth="TargetToken " + dev_token(i))
m = call("POST", "/rest/v1/softwaremodules", {"name": "bench-os", "version": "2"})
call("POST", "/rest/v1/softwaremodules/%d/artifacts?filename=os.swu" % m["id"], raw=b"x" * 4096, ctype="application/octet-stream")
s = call("POST", "/rest/v1/distributionsets", {"name": "bench-os", "version": "2", "modules": [m["id"]]})
r = call("POST", "/rest/v1/distributionsets/%d/assignedTargets" % s["id"], {"targets": ["dev%05d" % i for i in range(0, n, 2)]})
# Every fourth device of the assigned half reports success, every twentieth failure (with history).
for a in r["actions"]:
    i = int(a["controllerId"][3:])
    if i % 4 != 0 and i % 20 != 2:
        continue
    url = "/default/controller/v1/%s/deploymentBase/%d/feedback" % (a["controllerId"], a["actionId"])
    for step in (1, 2):
        call("POST", url, {"status": {"execution": "proceeding", "result": {"finished": "none", "progress": {"cnt": step, "of": 2}}, "details": ["step %d" % step]}}, auth="TargetToken " + dev_token(i))
    finished = "failure" if i % 20 == 2 else "success"
    call("POST", url, {"status": {"execution": "closed", "result": {"finished": finished}, "details": ["bench " + finished]}}, auth="TargetToken " + dev_token(i))
ro = call("POST", "/rest/v1/rollouts", {"name": "bench rollout", "distributionSetId": s["id"], "tag": "zone-9", "amountGroups": 5, "successThreshold": 80, "errorThreshold": 10})
call("POST", "/rest/v1/rollouts/%d/start" % ro["id"])
# Dashboard login: the form's nonce cookie, then the session cookie.
c.request("GET", "/ui/login"); r = c.getresponse(); page = r.read().decode()
nonce = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
login_cookie = [h for k, h in r.getheaders() if k.lower() == "set-cookie"][0].split(";")[0]
form = urllib.parse.urlencode({"csrf": nonce, "token": token, "tenant": "default"})
c.request("POST", "/ui/login", body=form, headers={"Cookie": login_cookie, "Content-Type": "application/x-www-form-urlencoded"})
r = c.getresponse(); r.read()
session = [h for k, h in r.getheaders() if k.lower() == "set-cookie" and h.startswith("keel_session=")][0].split(";")[0]
open(cookie_file, "w").write(session)
print("rollout", ro["id"])
PY
echo "seeded in $(( $(date +%s) - START )) s" >&2
COOKIE=$(cat "$WORK/cookie")
MIDDLE=$(( DEVICES / 50 / 2 ))
LAST=$(( (DEVICES + 49) / 50 ))

printf '| Page | Path | Requests/s | p50 | p99 | Bytes |\n|---|---|---|---|---|---|\n' >"$WORK/table.md"
run() {
  local name=$1 path=$2
  local bytes
  bytes=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' -H "Cookie: $COOKIE" "$BASE$path")
  case "$bytes" in 200\ *) ;; *) echo "$name: $path answered $bytes" >&2; exit 1;; esac
  wrk -t"$(( CONNECTIONS < 2 ? 1 : 2 ))" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -H "Cookie: $COOKIE" "$BASE$path" >"$WORK/run.txt"
  local rps p50 p99 errors
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/run.txt")
  p50=$(awk '$1=="50%" {print $2}' "$WORK/run.txt")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/run.txt")
  errors=$(grep -E "Non-2xx|Socket errors" "$WORK/run.txt" || true)
  [ -z "$errors" ] || { echo "$name: $errors" >&2; exit 1; }
  printf '| %s | `%s` | %s | %s | %s | %s |\n' "$name" "$path" "$rps" "$p50" "$p99" "${bytes#200 }" | tee -a "$WORK/table.md"
}
echo "== $DEVICES devices, wrk $CONNECTIONS connections, ${SECONDS_PER_RUN}s per page"
run "fleet overview, page 1" "/ui/fleet"
run "fleet, middle page" "/ui/fleet?page=$MIDDLE"
run "fleet, last page" "/ui/fleet?page=$LAST"
run "filter by tag" "/ui/fleet?tag=zone-3"
run "filter by state (error)" "/ui/fleet?state=error"
run "search controller id" "/ui/fleet?q=dev0123"
run "filter by attribute" "/ui/fleet?attr=hw%3Drev-b"
run "device page (3 actions)" "/ui/devices/dev00002"
run "rollout page (one tag, 5 groups)" "/ui/rollouts/1"
run "rollout progress JSON (polled every 1 s)" "/ui/rollouts/1/progress"
echo
cat "$WORK/table.md"
echo "server RSS after the runs: $(ps -o rss= -p $SERVER_PID) KiB"
