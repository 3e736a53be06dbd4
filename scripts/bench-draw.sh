#!/usr/bin/env bash
# The opening's admission push with the pre-queue draw on and off, and
# the fans' proof of work.
#
# Each run starts a release `onsale --listen` (one node, embedded store,
# a fresh scratch store) pinned to core 0, and `onsale-sim load` pinned
# to core 1 (its two worker processes inherit the pin, and each solves
# stamps on one thread): the driver creates the stadium event with its
# sale scheduled and `shoppers_max` SHOPPERS, FANS fans join and watch
# (`--mode wait`), and once every fan waits the driver opens the sale
# (`--open-after-joined`). With the draw on, every fan joined before the
# opening: each is told `pre_queued`, and at the opening hears its drawn
# place (a `position` frame) and then, for the first SHOPPERS, `admitted`.
# With it off, fans wait in arrival order. The other half of the fans
# keep waiting to the end of the run (45 s). The driver reports, for the
# fans admitted at the opening, decided → received: the event's decision
# (`decided_at`) to the `admitted` frame read by the fan.
#
# RUNS runs with the draw off and RUNS with it on, alternating, then one
# run with the draw on and joins asking for STAMP_BITS bits of proof of
# work (the driver sets it through the operator API; fans solve with
# `onsale_schema::stamp::solve`).
#
#   scripts/bench-draw.sh [fans] [runs] [stamp bits]
#   (default 4000 fans, 3 runs each way, 14 bits; SHOPPERS=fans/2)
#
# Every run is bounded: the driver stops at --duration-s, the server is
# killed after it. Needs python3 (reads the driver's JSON reports) and
# taskset; the figures vary with whatever else runs on the machine.
set -euo pipefail

cd "$(dirname "$0")/.."
FANS="${1:-4000}"
RUNS="${2:-3}"
STAMP_BITS="${3:-14}"
SHOPPERS="${SHOPPERS:-$((FANS / 2))}"
PORT=18961
TOKEN="operator token for the draw bench"
SERVER_CORE="${SERVER_CORE:-0}"
DRIVER_CORE="${DRIVER_CORE:-1}"

cargo build --release -q -p onsale-node --bin onsale
cargo build --release -q -p onsale-sim

SCRATCH="$(mktemp -d /tmp/onsale-bench-draw.XXXXXX)"
ONSALE_PID=""
cleanup() {
    [[ -n "$ONSALE_PID" ]] && kill "$ONSALE_PID" 2>/dev/null || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
OUT="${OUT:-$SCRATCH}"
mkdir -p "$OUT"

start_server() { # run name
    ONSALE_OPERATOR_TOKEN="$TOKEN" ONSALE_LOG=warn taskset -c "$SERVER_CORE" \
        target/release/onsale --listen "127.0.0.1:$PORT" --store "$SCRATCH/$1.db" \
        --global-rps 1000000 >"$SCRATCH/$1.onsale.out" 2>&1 &
    ONSALE_PID=$!
    for _ in $(seq 100); do
        grep -q "onsale serving" "$SCRATCH/$1.onsale.out" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$SCRATCH/$1.onsale.out"
    exit 1
}

stop_server() {
    kill "$ONSALE_PID" 2>/dev/null || true
    wait "$ONSALE_PID" 2>/dev/null || true
    ONSALE_PID=""
}

run() { # run name, extra driver flags...
    local name="$1"
    shift
    start_server "$name"
    # Exit status 2 is a violated check: the report says which.
    taskset -c "$DRIVER_CORE" \
        target/release/onsale-sim load --target "http://127.0.0.1:$PORT" --event 10 \
        --fans "$FANS" --workers 2 --mode wait --duration-s 45 --linger-s 5 --ops-token "$TOKEN" \
        --create-venue venues/stadium.json --create-config "{\"shoppers_max\":$SHOPPERS}" \
        --open-after-joined --name-prefix "$name" --out "$OUT/$name.json" "$@" \
        >"$OUT/$name.out" 2>&1 || true
    stop_server
    python3 - "$OUT/$name.json" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
o = r["admissions"]["at_opening"]
p = r.get("pre_queue") or {}
place = p.get("opening_to_place") or {}
print(f"{sys.argv[2]:<10} admitted at the opening {o['count']:>5}: decided → received "
      f"p50 {o['p50_ms']:7.1f} ms  p99 {o['p99_ms']:7.1f} ms  max {o['max_ms']:7.1f} ms;  "
      f"pre-queued {p.get('pre_queued', 0)}, placed by push {p.get('via_push', 0)}, "
      f"open → place p50 {place.get('p50_ms', 0):.1f} p99 {place.get('p99_ms', 0):.1f} ms;  "
      f"checks {r['checks']['verdict']}")
PY
}

echo "$FANS fans, shoppers_max $SHOPPERS, server on core $SERVER_CORE, driver on core $DRIVER_CORE"
for i in $(seq "$RUNS"); do
    run "off-$i"
    run "on-$i" --pre-queue-draw
done

python3 - "$OUT" "$RUNS" <<'PY'
import json, sys
out, runs = sys.argv[1], int(sys.argv[2])
for mode in ("off", "on"):
    rs = [json.load(open(f"{out}/{mode}-{i}.json"))["admissions"]["at_opening"] for i in range(1, runs + 1)]
    p50 = sorted(r["p50_ms"] for r in rs)
    p99 = sorted(r["p99_ms"] for r in rs)
    print(f"draw {mode:<3}: decided → received at the opening, p50 {p50[0]:.1f}..{p50[-1]:.1f} ms, "
          f"p99 {p99[0]:.1f}..{p99[-1]:.1f} ms over {runs} runs")
PY

run "stamp-$STAMP_BITS" --pre-queue-draw --stamp-bits "$STAMP_BITS"
grep -E "proof of work|solve \(work\)|challenge → solved|  join " "$OUT/stamp-$STAMP_BITS.out" || true
