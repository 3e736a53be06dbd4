#!/usr/bin/env bash
# Defences off vs on over several seeds: runs scenario A (default
# sim/scenarios/bots.toml) and B (default sim/scenarios/bots-defended.toml)
# for each seed, compares each pair, and prints one line per seed: bots'
# share of tickets, genuine buyers' median and p90 arrival -> purchase, the
# genuine purchase rate, and the median of the genuine fans who bought in
# both runs. Needs jq.
# Usage: sim/defences-seeds.sh [FIRST_SEED] [LAST_SEED] [OUT_DIR] [A.toml] [B.toml]
set -euo pipefail
cd "$(dirname "$0")/.."
first="${1:-1}"
last="${2:-5}"
out="${3:-/tmp/defences}"
a="${4:-sim/scenarios/bots.toml}"
b="${5:-sim/scenarios/bots-defended.toml}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -p onsale-sim
sim="$CARGO_TARGET_DIR/release/onsale-sim"
mkdir -p "$out"
printf '%-4s | %-15s | %-23s | %-23s | %-15s | %s\n' seed "bots' share" \
    "genuine p50 A -> B (s)" "genuine p90 A -> B (s)" "purchase rate" "same buyers: n, p50 A -> B (s)"
for seed in $(seq "$first" "$last"); do
    "$sim" run "$a" --seed "$seed" --out "$out/a-$seed" --quiet 2> /dev/null
    "$sim" run "$b" --seed "$seed" --out "$out/b-$seed" --quiet 2> /dev/null
    "$sim" compare "$out/a-$seed" "$out/b-$seed" --out "$out/compare-$seed" 2> /dev/null
    jq -r --arg seed "$seed" '
        .metrics as $m | .same_genuine_buyers as $s
        | [$seed,
           "\($m.bot_ticket_share.a * 100 | . * 10 | round / 10) -> \($m.bot_ticket_share.b * 100 | . * 10 | round / 10) %",
           "\($m["genuine.arrival_to_purchase.p50_s"].a) -> \($m["genuine.arrival_to_purchase.p50_s"].b)",
           "\($m["genuine.arrival_to_purchase.p90_s"].a) -> \($m["genuine.arrival_to_purchase.p90_s"].b)",
           "\($m["genuine.purchase_rate"].a * 1000 | round / 10) -> \($m["genuine.purchase_rate"].b * 1000 | round / 10) %",
           (if $s == null then "-" else "\($s.count), \($s.arrival_to_purchase_a.p50_s) -> \($s.arrival_to_purchase_b.p50_s)" end)]
        | "\(.[0] | .[0:4]) | \(.[1]) | \(.[2]) | \(.[3]) | \(.[4]) | \(.[5])"' \
        "$out/compare-$seed/compare.json"
done
echo "outputs and compare.html per seed in $out"
