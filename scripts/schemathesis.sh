#!/usr/bin/env bash
# Property-based API testing: schemathesis (PyPI, pinned) generates requests from keel-server's own
# OpenAPI document (GET /rest/v1/openapi.json) and checks every answer against it. Fails on any
# server error (5xx), any status code the document does not list for the route, a wrong content type
# or a body that does not match the documented schema.
#
# Starts a debug keel-server on loopback with a temporary data directory, registers a device with a
# release assigned (so the DDI routes have something to serve), then runs the DDI API with the
# device's token and the management API with the admin token, each bounded by --max-examples per
# operation and a time budget. Usage: scripts/schemathesis.sh [extra schemathesis run options]
# Environment: KEEL_SERVER_BIN (default: the debug build of the server's tests), KEEL_SCHEMATHESIS_EXAMPLES (default 30), KEEL_SCHEMATHESIS_MAX_TIME (seconds per API,
# default 120), KEEL_SCHEMATHESIS_VENV (default target/schemathesis-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
examples=${KEEL_SCHEMATHESIS_EXAMPLES:-30}
max_time=${KEEL_SCHEMATHESIS_MAX_TIME:-120}
target_dir=${CARGO_TARGET_DIR:-target}
venv=$(realpath -m "${KEEL_SCHEMATHESIS_VENV:-$target_dir/schemathesis-venv}")

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
  echo "schemathesis.sh: installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv" || {
    echo "schemathesis.sh: python3 -m venv failed; install python3-venv (scripts/setup-debian.sh does)" >&2
    exit 1
  }
  "$venv/bin/python" -m pip install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

# The binary the server's test suite builds (same features: no second build of the dependencies);
# KEEL_SERVER_BIN picks another one (e.g. a release build).
if [ -z "${KEEL_SERVER_BIN:-}" ]; then
  cargo test -q -p keel-server --test it --no-run 2>&1 | grep -v '^ *Executable' || true
fi
server_bin=$(realpath -m "${KEEL_SERVER_BIN:-$target_dir/debug/keel-server}")
[ -x "$server_bin" ] || { echo "schemathesis.sh: no keel-server binary at $server_bin" >&2; exit 1; }

data=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$data"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
RUST_LOG=${RUST_LOG:-keel_server=warn} "$server_bin" --data-dir "$data/server" --listen "127.0.0.1:$port" \
  --create-default-tenant --poll-interval 00:00:10 >"$data/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 200); do
  curl -fs -o /dev/null "$base/rest/v1/openapi.json" && [ -s "$data/server/admin.token" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$data/server.log" >&2; echo "schemathesis.sh: keel-server exited" >&2; exit 1; }
  sleep 0.1
done
admin=$(cat "$data/server/admin.token")

api() { # METHOD PATH [JSON body]
  curl -fsS -X "$1" -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
    ${3:+--data "$3"} "$base$2"
}
field() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }

device_token=schemathesis-device-token
api POST /rest/v1/targets "{\"controllerId\": \"dev1\", \"securityToken\": \"$device_token\", \"tags\": [\"st\"]}" >/dev/null
module=$(api POST /rest/v1/softwaremodules '{"name": "st", "version": "1"}' | field '["id"]')
head -c 4096 /dev/urandom >"$data/a.swu"
curl -fsS -H "Authorization: Bearer $admin" -H 'Content-Type: application/octet-stream' \
  --data-binary "@$data/a.swu" "$base/rest/v1/softwaremodules/$module/artifacts?filename=a.swu" >/dev/null
set_id=$(api POST /rest/v1/distributionsets "{\"name\": \"st\", \"version\": \"1\", \"modules\": [$module]}" | field '["id"]')
action=$(api POST /rest/v1/targets/dev1/assignedDS "{\"id\": $set_id, \"type\": \"soft\"}" | field '["id"]')

# Throwaway objects for the destructive routes, so fuzzing them does not delete what the other
# routes use (the admin token, dev1).
api POST /rest/v1/targets '{"controllerId": "dev-delete"}' >/dev/null
throwaway_token=$(api POST /rest/v1/tokens '{"name": "throwaway", "role": "viewer"}' | field '["id"]')

# Path parameters that name the objects created above, so requests reach the handlers' logic
# instead of stopping at 401/404 (the most specific entry first: its parameters win).
# The DDI run goes first: the management run rotates dev1's token.
cat >"$data/schemathesis.toml" <<TOML
[[operations]]
include-path-regex = "^/\\\\{tenant\\\\}/"
headers = { Authorization = "TargetToken $device_token" }
parameters = { "path.tenant" = "default", "path.controllerId" = "dev1", "path.actionId" = $action, "path.moduleId" = $module, "path.fileName" = "a.swu" }

[[operations]]
include-path = "/rest/v1/tokens/{id}"
include-method = "DELETE"
parameters = { "path.id" = $throwaway_token, "header.X-Keel-Tenant" = "default" }

[[operations]]
include-path = "/rest/v1/targets/{controllerId}"
include-method = "DELETE"
parameters = { "path.controllerId" = "dev-delete", "header.X-Keel-Tenant" = "default" }

[[operations]]
include-path-regex = "^/rest/"
headers = { Authorization = "Bearer $admin" }
parameters = { "path.controllerId" = "dev1", "header.X-Keel-Tenant" = "default" }
TOML

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
run() { # NAME PATH-REGEX
  # From the data directory: schemathesis keeps a .schemathesis/ cache in its working directory.
  (cd "$data" && run_in_data "$@")
}
run_in_data() {
  echo "schemathesis.sh: $1 API (at most $examples examples per operation, $max_time s)"
  "$venv/bin/schemathesis" --config-file "$data/schemathesis.toml" run "$base/rest/v1/openapi.json" \
    --include-path-regex "$2" --checks "$checks" --max-examples "$examples" --max-time "$max_time" \
    --workers 1 --seed 12 --generation-database none --no-color "${@:3}"
}
status=0
run DDI '^/\{tenant\}/' "$@" || status=1
run management '^/rest/' "$@" || status=1
if grep -q 'panicked' "$data/server.log"; then
  echo "schemathesis.sh: keel-server panicked:" >&2
  grep -A5 'panicked' "$data/server.log" >&2
  status=1
fi
exit $status
