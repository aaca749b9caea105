#!/usr/bin/env bash
# Object storage benchmark (not a test): artifact upload (management API) and device download
# (DDI, device token) throughput of keel-server with local files vs S3-compatible storage
# (s3s-fs, a real SigV4 S3 server, on loopback), downloads streamed through keel-server or
# redirected to pre-signed URLs. curl does every transfer; all processes share this machine.
#
#   bench/object-store-bench.sh [SIZE_MIB] [RUNS]
#
# Prints MiB/s (median of RUNS) and the ratio to local files; results go to docs/benchmarks.md
# ("Object storage").
set -euo pipefail
SIZE_MIB=${1:-256}
RUNS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

cargo build --release -p keel-server --example s3-server --manifest-path "$ROOT/Cargo.toml" >&2
SERVER="$ROOT/target/release/keel-server"
S3SERVER="$ROOT/target/release/examples/s3-server"
WORK=$(mktemp -d /tmp/keel-objbench.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
    for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
    echo "no answer from $1" >&2; exit 1
}

S3PORT=$(port)
"$S3SERVER" "$WORK/s3" "127.0.0.1:$S3PORT" keel >"$WORK/s3.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$S3PORT/"
read -r _ ACCESS SECRET _ < <(sed -n 1p "$WORK/s3.log" | tr ' ' '\n' | cut -d= -f2 | paste -sd' ')

# keel-server NAME [extra flags]: starts one instance with its own data directory.
declare -A BASE
start() {
    local name=$1; shift
    local p; p=$(port)
    AWS_ACCESS_KEY_ID=$ACCESS AWS_SECRET_ACCESS_KEY=$SECRET \
        "$SERVER" --data-dir "$WORK/$name" --listen "127.0.0.1:$p" --create-default-tenant \
        "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    BASE[$name]="http://127.0.0.1:$p"
    wait_http "${BASE[$name]}/rest/v1/openapi.json"
}
start local
start s3 --object-store-url s3://keel/streamed --s3-endpoint "http://127.0.0.1:$S3PORT"
start s3-presigned --object-store-url s3://keel/presigned --s3-endpoint "http://127.0.0.1:$S3PORT" \
    --s3-presign-downloads

for run in $(seq "$RUNS"); do
    head -c "$((SIZE_MIB << 20))" /dev/urandom >"$WORK/artifact-$run.bin"
done

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
declare -A UP DOWN
for name in local s3 s3-presigned; do
    base=${BASE[$name]}
    token=$(cat "$WORK/$name/admin.token")
    auth=(-H "Authorization: Bearer $token" -H "Content-Type: application/json")
    module=$(curl -sf "${auth[@]}" -d '{"name":"bench","version":"1"}' "$base/rest/v1/softwaremodules" | jq .id)
    curl -sf "${auth[@]}" -d '{"controllerId":"dev1","securityToken":"bench-device-token-1"}' \
        "$base/rest/v1/targets" >/dev/null
    ups=()
    for run in $(seq "$RUNS"); do
        secs=$(curl -sf -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $token" \
            -H "Content-Type: application/octet-stream" --data-binary "@$WORK/artifact-$run.bin" \
            "$base/rest/v1/softwaremodules/$module/artifacts?filename=a$run.swu")
        ups+=("$(echo "$SIZE_MIB / $secs" | bc -l)")
    done
    set=$(curl -sf "${auth[@]}" -d "{\"name\":\"bench\",\"version\":\"1\",\"modules\":[$module]}" \
        "$base/rest/v1/distributionsets" | jq .id)
    curl -sf "${auth[@]}" -d "{\"id\":$set}" "$base/rest/v1/targets/dev1/assignedDS" >/dev/null
    downs=()
    for run in $(seq "$RUNS"); do
        url="$base/default/controller/v1/dev1/softwaremodules/$module/artifacts/a$run.swu"
        got=$(curl -sfL -o "$WORK/download.bin" -w '%{size_download} %{time_total}' \
            -H "Authorization: TargetToken bench-device-token-1" "$url")
        cmp -s "$WORK/download.bin" "$WORK/artifact-$run.bin" || { echo "$name: download $run differs" >&2; exit 1; }
        downs+=("$(echo "$got" | awk '{print $1 / 1048576 / $2}')")
    done
    UP[$name]=$(printf '%s\n' "${ups[@]}" | median)
    DOWN[$name]=$(printf '%s\n' "${downs[@]}" | median)
done

echo "object storage: ${SIZE_MIB} MiB artifacts, median of $RUNS, $(nproc) CPUs, $(date -u +%Y-%m-%d)"
printf '%-28s %12s %8s %14s %8s\n' storage "upload MiB/s" ratio "download MiB/s" ratio
for name in local s3 s3-presigned; do
    printf '%-28s %12.0f %8.2f %14.0f %8.2f\n' "$name" "${UP[$name]}" \
        "$(echo "${UP[$name]} / ${UP[local]}" | bc -l)" "${DOWN[$name]}" \
        "$(echo "${DOWN[$name]} / ${DOWN[local]}" | bc -l)"
done
