#!/usr/bin/env bash
# onsalectl against a node holding many events: how long `event list`
# takes over them, and what `top` (one poll a second) costs the node.
#
# Starts a release `onsale` on a scratch store (one process, role both),
# creates EVENTS small events through the operator API (each activated on
# the node), then:
#   - times `onsalectl event list -o json` and the table, RUNS times each
#     (min / median / max, wall clock, the CLI process included);
#   - reads the node's CPU time (/proc/PID/stat) over SECONDS seconds idle,
#     then over SECONDS seconds with `onsalectl top` running in tmux
#     against it: the difference is what top costs, in % of one core.
#
#   scripts/bench-onsalectl.sh [events] [runs] [seconds]
set -euo pipefail

cd "$(dirname "$0")/.."
EVENTS="${1:-10000}"
RUNS="${2:-10}"
SECONDS_IDLE="${3:-30}"
PORT=18941
export ONSALE_OPERATOR_TOKEN="operator token for the onsalectl bench"

command -v tmux >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q tmux >/dev/null
cargo build --release -q -p onsale-node --bin onsale
cargo build --release -q -p onsalectl

SCRATCH="$(mktemp -d /tmp/onsale-bench-ctl.XXXXXX)"
cleanup() {
    tmux kill-session -t onsalectl-bench 2>/dev/null || true
    [[ -n "${NODE_PID:-}" ]] && kill "$NODE_PID" 2>/dev/null || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

ONSALE_LOG=warn target/release/onsale --listen "127.0.0.1:$PORT" \
    --store "$SCRATCH/ctl.db" >"$SCRATCH/node.out" 2>&1 &
NODE_PID=$!
for _ in $(seq 100); do
    grep -q "onsale serving" "$SCRATCH/node.out" 2>/dev/null && break
    sleep 0.1
done

echo "== creating $EVENTS events"
started=$(date +%s.%N)
python3 - "$PORT" "$EVENTS" <<'PY'
import http.client, json, os, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
venue = {"name": "Bench Room", "city": "Loopback",
         "price_levels": [{"id": "std", "name": "Standard", "price_cents": 5000}],
         "sections": [{"id": "A", "name": "A", "price_level": "std",
                       "rows": [{"id": "1", "seats": [{"id": str(s)} for s in range(1, 11)]}]}]}
auth = {"Authorization": "Bearer " + os.environ["ONSALE_OPERATOR_TOKEN"],
        "Content-Type": "application/json"}
conn = http.client.HTTPConnection("127.0.0.1", port)
for e in range(1, count + 1):
    body = json.dumps({"event": e, "name": f"Bench night {e}", "city": "Loopback",
                       "starts_at": 1900000000000, "venue": venue, "config": {}})
    conn.request("POST", "/api/ops/events", body, auth)
    answer = conn.getresponse()
    answer.read()
    if answer.status != 200:
        sys.exit(f"event {e}: {answer.status}")
PY
echo "created in $(echo "$(date +%s.%N) - $started" | bc) s"

CTL=(target/release/onsalectl --endpoint "http://127.0.0.1:$PORT")
listed=$("${CTL[@]}" event list -o json | grep -c '"event"' || true)
echo "event list -o json lists $listed events"

time_runs() { # label, command...
    local label=$1; shift
    local times=()
    for _ in $(seq "$RUNS"); do
        local t0 t1
        t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N)
        times+=($(( (t1 - t0) / 1000000 )))
    done
    printf '%s\n' "${times[@]}" | sort -n | awk -v label="$label" '
        { v[NR] = $1 } END { printf "%s over %d runs: min %d ms, median %d ms, max %d ms\n",
        label, NR, v[1], v[int((NR + 1) / 2)], v[NR] }'
}
time_runs "event list -o json ($EVENTS events)" "${CTL[@]}" event list -o json
time_runs "event list, table ($EVENTS events)" "${CTL[@]}" event list

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$NODE_PID/stat"; }
hz=$(getconf CLK_TCK)
idle0=$(cpu_ticks); sleep "$SECONDS_IDLE"; idle1=$(cpu_ticks)
tmux new-session -d -s onsalectl-bench -x 160 -y 50 \
    "ONSALE_OPERATOR_TOKEN='$ONSALE_OPERATOR_TOKEN' ${CTL[*]} top"
sleep 2
top0=$(cpu_ticks); sleep "$SECONDS_IDLE"; top1=$(cpu_ticks)
tmux kill-session -t onsalectl-bench
awk -v i=$((idle1 - idle0)) -v t=$((top1 - top0)) -v s="$SECONDS_IDLE" -v hz="$hz" 'BEGIN {
    printf "node CPU, %d s each: idle %.2f%% of a core, with top polling %.2f%%: top costs %.2f%% of a core\n",
        s, 100 * i / hz / s, 100 * t / hz / s, 100 * (t - i) / hz / s }'
