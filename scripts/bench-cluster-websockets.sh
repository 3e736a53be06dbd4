#!/usr/bin/env bash
# Fan websockets spread over several gateway processes of a cluster, one
# event owned by one node process: memory per fan on the gateways and the
# delay from the admission decision (on the node) to the `admitted` frame
# at the fan (through the mesh, once per gateway, then fanned out).
#
# Starts a release `onsale --role node` and GATEWAYS `onsale --role
# gateway` processes (127.0.0.11 and 127.0.0.21.., one cookie, one store),
# creates the 60,000-seat stadium with its sale scheduled and
# `shoppers_max` 20,000 through the first gateway, reads every gateway's
# RSS, then `onsale-sim load --mode wait --fan-targets ...` brings FANS fans
# over WORKERS worker processes, worker w on gateway w mod GATEWAYS. With
# every fan waiting the RSS is read again, the sale is opened, and the
# driver reports decided → received for the admitted fans.
#
# With OPEN_BY_DRIVER=1 the load driver opens the sale itself once every
# fan waits (`--open-after-joined`), so it also reports each waiting fan's
# first position update after the opening (`open → position`); the RSS
# and CPU readings around the opening are then approximate.
#
#   scripts/bench-cluster-websockets.sh [fans] [gateways] [workers]
#   (default 100000 fans, 6 gateways, 12 workers: two per gateway, so
#   that no gateway gets more fans than its ~19,500 open files allow)
set -euo pipefail

cd "$(dirname "$0")/.."
FANS="${1:-100000}"
GATEWAYS="${2:-6}"
WORKERS="${3:-12}"
TOKEN="operator token for the cluster websocket bench"

cargo build --release -q -p onsale-node --bin onsale
cargo build --release -q -p onsale-sim

SCRATCH="$(mktemp -d /tmp/onsale-bench-cluster.XXXXXX)"
PIDS=()
cleanup() {
    [[ -n "${LOAD_PID:-}" ]] && kill "$LOAD_PID" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
printf '%s' "cluster websocket bench cookie" >"$SCRATCH/cookie"
chmod 600 "$SCRATCH/cookie"
export ONSALE_OPERATOR_TOKEN="$TOKEN" ONSALE_TOKEN_SECRET="cluster websocket bench token key"

wait_line() { # file, text
    for _ in $(seq 300); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$1"
    exit 1
}

ONSALE_LOG=warn target/release/onsale --role node --node-id n0 \
    --cluster-listen 127.0.0.11:17100 --cookie-file "$SCRATCH/cookie" \
    --store "$SCRATCH/cluster.db" >"$SCRATCH/n0.out" 2>&1 &
PIDS+=($!)
NODE_PID=$!
wait_line "$SCRATCH/n0.out" "onsale mesh n0"
TARGETS=()
GW_PIDS=()
for j in $(seq 0 $((GATEWAYS - 1))); do
    host="127.0.0.$((21 + j))"
    ONSALE_LOG=warn,onsale_gateway::hub=debug target/release/onsale --role gateway --node-id "g$j" \
        --cluster-listen "$host:17100" --listen "$host:18080" --seeds 127.0.0.11:17100 \
        --cookie-file "$SCRATCH/cookie" --store "$SCRATCH/cluster.db" --global-rps 1000000 \
        >"$SCRATCH/g$j.out" 2>&1 &
    PIDS+=($!)
    GW_PIDS+=($!)
    TARGETS+=("http://$host:18080")
done
for j in $(seq 0 $((GATEWAYS - 1))); do wait_line "$SCRATCH/g$j.out" "onsale serving"; done
BASE="${TARGETS[0]}"
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
gateways_kb() { local t=0; for p in "${GW_PIDS[@]}"; do t=$((t + $(rss_kb "$p"))); done; echo "$t"; }

python3 - "$SCRATCH/event.json" <<'PY'
import json, sys
venue = json.load(open("venues/stadium.json"))
json.dump({"event": 10, "name": "Cluster websocket bench", "city": "Bench", "starts_at": 1900000000000,
           "venue": venue, "config": {"shoppers_max": 20000}}, open(sys.argv[1], "w"))
PY
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" --data-binary @"$SCRATCH/event.json" \
    "$BASE/api/ops/events"
for t in "${TARGETS[@]}"; do curl -sf -o /dev/null "$t/api/events/10"; done
sleep 2
BEFORE_KB="$(gateways_kb)"
NODE_BEFORE_KB="$(rss_kb "$NODE_PID")"
echo "$GATEWAYS gateways' RSS with the stadium event, no fans: $((BEFORE_KB / 1024)) MiB; node: $((NODE_BEFORE_KB / 1024)) MiB"

FAN_TARGETS="$(IFS=,; echo "${TARGETS[*]}")"
target/release/onsale-sim load --target "$BASE" --fan-targets "$FAN_TARGETS" --event 10 \
    --fans "$FANS" --workers "$WORKERS" --mode wait --ops-token "$TOKEN" --duration-s 900 \
    ${OPEN_BY_DRIVER:+--open-after-joined} \
    --linger-s 20 --out "$SCRATCH/report.json" >"$SCRATCH/load.out" 2>&1 &
LOAD_PID=$!
STARTED=$(date +%s)
# Until every fan waits or gave up (`settled` counts both).
for _ in $(seq 9000); do
    grep -q "settled $FANS " "$SCRATCH/load.out" 2>/dev/null && break
    kill -0 "$LOAD_PID" 2>/dev/null || { cat "$SCRATCH/load.out"; exit 1; }
    sleep 0.1
done
echo "every fan settled after $(( $(date +%s) - STARTED )) s: $(tail -n 1 "$SCRATCH/load.out")"
sleep 3
AFTER_KB="$(gateways_kb)"
echo "$GATEWAYS gateways' RSS with $FANS fans waiting: $((AFTER_KB / 1024)) MiB; node: $(( $(rss_kb "$NODE_PID") / 1024)) MiB"
echo "gateway memory per fan (RSS growth / fans): $(( (AFTER_KB - BEFORE_KB) * 1024 / FANS )) bytes"
CPU_BEFORE="$(for p in "${GW_PIDS[@]}" "$NODE_PID"; do awk '{print $14 + $15}' "/proc/$p/stat"; done | paste -sd+ | bc)"
if [[ -z "${OPEN_BY_DRIVER:-}" ]]; then
    curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -d '{"command":"open"}' \
        "$BASE/api/ops/events/10/sale"
fi
sleep 15
CPU_AFTER="$(for p in "${GW_PIDS[@]}" "$NODE_PID"; do awk '{print $14 + $15}' "/proc/$p/stat"; done | paste -sd+ | bc)"
echo "server CPU in the 15 s after the opening (node + gateways): $(( (CPU_AFTER - CPU_BEFORE) * 10 )) ms"
wait "$LOAD_PID" || true
LOAD_PID=""
grep -E "admissions|decided →|open →|checks|answers 429|errors" "$SCRATCH/load.out" || true
for j in $(seq 0 $((GATEWAYS - 1))); do
    grep "fanned out" "$SCRATCH/g$j.out" | sed 's/\x1b\[[0-9;]*m//g' | tail -n 1
done
