#!/usr/bin/env bash
# The simulator's benchmark: the 10M-fan `eras` scenario on the 60,000-seat
# stadium, timed with /usr/bin/time -v (wall time, peak RSS). Budget: <= 60 s
# on one core and <= 4 GiB. Usage: sim/bench-eras.sh [SEED] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
seed="${1:-1}"
out="${2:-/tmp/eras}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -p onsale-sim
/usr/bin/time -v "$CARGO_TARGET_DIR/release/onsale-sim" run sim/scenarios/eras.toml \
    --seed "$seed" --out "$out" --quiet 2> "$out.time" || { cat "$out.time"; exit 1; }
grep -E "^eras:|Elapsed \(wall|Maximum resident" "$out.time"
