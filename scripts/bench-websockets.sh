#!/usr/bin/env bash
# 19,000 fan websockets on one gateway process: server memory per
# connection, and the delay from the admission decision to the `admitted`
# frame at the fan when all of them are admitted at once.
#
# Starts a release `onsale` on a scratch store, creates the 60,000-seat
# stadium with its sale scheduled, and reads the gateway's RSS. Then
# `onsale-sim load --mode wait` brings FANS fans over two worker processes
# (several 127.0.0.x source addresses): each logs in, joins the waiting
# room, opens its websocket and watches. With every fan waiting, the RSS is
# read again (growth / connections = memory per fan, waiting-room state
# included), the sale is opened, and the driver reports decided → received.
#
#   scripts/bench-websockets.sh [fans]          (default 19000)
set -euo pipefail

cd "$(dirname "$0")/.."
FANS="${1:-19000}"
PORT=18941
TOKEN="operator token for the websocket bench"

cargo build --release -q -p onsale-node --bin onsale
cargo build --release -q -p onsale-sim

SCRATCH="$(mktemp -d /tmp/onsale-bench-ws.XXXXXX)"
cleanup() {
    [[ -n "${LOAD_PID:-}" ]] && kill "$LOAD_PID" 2>/dev/null || true
    [[ -n "${ONSALE_PID:-}" ]] && kill "$ONSALE_PID" 2>/dev/null || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

ONSALE_OPERATOR_TOKEN="$TOKEN" ONSALE_LOG=warn,onsale_gateway::hub=debug \
    target/release/onsale --demo --listen "127.0.0.1:$PORT" --store "$SCRATCH/ws.db" \
    --global-rps 1000000 >"$SCRATCH/onsale.out" 2>&1 &
ONSALE_PID=$!
for _ in $(seq 100); do
    grep -q "onsale serving" "$SCRATCH/onsale.out" 2>/dev/null && break
    sleep 0.1
done
BASE="http://127.0.0.1:$PORT"
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$ONSALE_PID/status"; }
fds() { ls "/proc/$ONSALE_PID/fd" | wc -l; }

python3 - "$SCRATCH/event.json" <<'EOF'
import json, sys
venue = json.load(open("venues/stadium.json"))
json.dump({"event": 10, "name": "Websocket bench", "city": "Bench", "starts_at": 1900000000000,
           "venue": venue, "config": {"shoppers_max": 20000}}, open(sys.argv[1], "w"))
EOF
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" --data-binary @"$SCRATCH/event.json" \
    "$BASE/api/ops/events"
curl -sf -o /dev/null "$BASE/api/events/10"
sleep 2
BEFORE_KB="$(rss_kb)"
echo "gateway RSS with the stadium event, no fans: $((BEFORE_KB / 1024)) MiB"

target/release/onsale-sim load --target "$BASE" --event 10 --fans "$FANS" --workers 2 \
    --mode wait --ops-token "$TOKEN" --duration-s 240 --linger-s 15 \
    --out "$SCRATCH/report.json" >"$SCRATCH/load.out" 2>&1 &
LOAD_PID=$!
# Wait until every fan waits, then read the memory and open the sale.
for _ in $(seq 2400); do
    grep -q "waiting $FANS " "$SCRATCH/load.out" 2>/dev/null && break
    kill -0 "$LOAD_PID" 2>/dev/null || { cat "$SCRATCH/load.out"; exit 1; }
    sleep 0.1
done
sleep 2
AFTER_KB="$(rss_kb)"
OPEN="$(fds)"
echo "gateway RSS with $FANS fans waiting on websockets: $((AFTER_KB / 1024)) MiB, $OPEN open files"
echo "memory per fan (RSS growth / fans): $(( (AFTER_KB - BEFORE_KB) * 1024 / FANS )) bytes"
[[ -n "${PERF_OUT:-}" ]] && { perf record -F 4000 -e cpu-clock -g -a -o "$PERF_OUT" -- sleep 3 >/dev/null 2>&1 & sleep 0.3; }
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -d '{"command":"open"}' \
    "$BASE/api/ops/events/10/sale"
wait "$LOAD_PID" || true
LOAD_PID=""
grep -E "admissions|decided →|open →|checks|answers 429" "$SCRATCH/load.out"
grep "fanned out" "$SCRATCH/onsale.out" | sed 's/\x1b\[[0-9;]*m//g' | tail -n 3
