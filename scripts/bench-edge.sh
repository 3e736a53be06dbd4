#!/usr/bin/env bash
# "Sold out" answers per second at the edge, side by side with nginx.
#
# Starts a release `onsale` on a scratch store, sells out a two-seat event
# through the real API, then measures with wrk (same threads, connections
# and duration for both):
#   - onsale: POST /api/events/9/commands {"cmd":"join"} with a session:
#     answered from the gateway's edge cache, never reaching the event;
#   - nginx (Debian): GET of a static file holding the same reply bytes.
# Prints both rates and their ratio. Installs wrk and nginx if missing.
#
#   scripts/bench-edge.sh [duration-seconds] [connections]
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION="${1:-10}"
CONNS="${2:-64}"
THREADS=2
PORT_ONSALE=18931
PORT_NGINX=18932

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk nginx >/dev/null
fi
cargo build --release -q -p onsale-node --bin onsale

SCRATCH="$(mktemp -d /tmp/onsale-bench-edge.XXXXXX)"
cleanup() {
    [[ -n "${ONSALE_PID:-}" ]] && kill "$ONSALE_PID" 2>/dev/null || true
    [[ -f "$SCRATCH/nginx.pid" ]] && kill "$(cat "$SCRATCH/nginx.pid")" 2>/dev/null || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

export ONSALE_OPERATOR_TOKEN="operator token for the edge bench"
ONSALE_LOG=warn target/release/onsale --demo --listen "127.0.0.1:$PORT_ONSALE" \
    --store "$SCRATCH/edge.db" --global-rps 100000000 >"$SCRATCH/onsale.out" 2>&1 &
ONSALE_PID=$!
for _ in $(seq 100); do
    grep -q "onsale serving" "$SCRATCH/onsale.out" 2>/dev/null && break
    sleep 0.1
done
BASE="http://127.0.0.1:$PORT_ONSALE"
AUTH="Authorization: Bearer $ONSALE_OPERATOR_TOKEN"

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# A two-seat event, sold out by one fan through the real API.
python3 - "$SCRATCH/event.json" <<'EOF'
import json, sys
venue = {"name": "Tiny", "city": "Edge", "price_levels": [{"id": "p", "name": "P", "price_cents": 1000}],
         "sections": [{"id": "S", "name": "S", "price_level": "p",
                       "rows": [{"id": "A", "seats": [{"id": "1"}, {"id": "2"}]}]}]}
json.dump({"event": 9, "name": "Edge bench", "city": "Edge", "starts_at": 1900000000000, "venue": venue},
          open(sys.argv[1], "w"))
EOF
curl -sf -H "$AUTH" -d @"$SCRATCH/event.json" "$BASE/api/ops/events" >/dev/null
curl -sf -H "$AUTH" -d '{"command":"open"}' "$BASE/api/ops/events/9/sale" >/dev/null
SESSION_JSON="$(curl -sf -d '{"name":"buyer"}' "$BASE/api/session")"
SESSION="$(echo "$SESSION_JSON" | json 'd["session"]')"
FAN="$(echo "$SESSION_JSON" | json 'd["fan"]')"
fan() { curl -s -H "Authorization: Bearer $SESSION" -d "$1" "$BASE/api/events/9/commands"; }
fan "{\"cmd\":\"join\",\"fan\":$FAN}" >/dev/null
HOLD=""
for _ in $(seq 100); do
    HOLD="$(fan "{\"cmd\":\"hold\",\"fan\":$FAN,\"request\":{\"kind\":\"best\",\"count\":2,\"area\":{\"in\":\"anywhere\"}}}" \
        | json 'd.get("placed",{}).get("hold","")')"
    [[ -n "$HOLD" ]] && break
    sleep 0.1
done
for _ in $(seq 100); do
    STATUS="$(fan "{\"cmd\":\"status\",\"fan\":$FAN}")"
    echo "$STATUS" | grep -q '"purchased"' && break
    echo "$STATUS" | grep -q '"paying":false' && fan "{\"cmd\":\"submit_payment\",\"fan\":$FAN,\"hold\":$HOLD}" >/dev/null
    sleep 0.2
done
echo "$STATUS" | grep -q '"purchased"' || { echo "could not sell the event out: $STATUS" >&2; exit 1; }

# What a late fan gets, and the same bytes as nginx's static file.
LATE_JSON="$(curl -sf -d '{"name":"late fan"}' "$BASE/api/session")"
LATE_SESSION="$(echo "$LATE_JSON" | json 'd["session"]')"
LATE_FAN="$(echo "$LATE_JSON" | json 'd["fan"]')"
ANSWER="$(curl -s -H "Authorization: Bearer $LATE_SESSION" -d "{\"cmd\":\"join\",\"fan\":$LATE_FAN}" \
    "$BASE/api/events/9/commands")"
echo "edge answer (${#ANSWER} bytes): $ANSWER"
[[ "$ANSWER" == *sold_out* ]] || { echo "not sold out: $ANSWER" >&2; exit 1; }

chmod 755 "$SCRATCH"
mkdir -p "$SCRATCH/www"
printf '%s' "$ANSWER" >"$SCRATCH/www/sold-out.json"
cat >"$SCRATCH/nginx.conf" <<EOF
worker_processes 2;
pid $SCRATCH/nginx.pid;
error_log $SCRATCH/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    default_type application/json;
    server {
        listen 127.0.0.1:$PORT_NGINX;
        root $SCRATCH/www;
    }
}
EOF
nginx -c "$SCRATCH/nginx.conf" -p "$SCRATCH"
sleep 0.5
curl -sf "http://127.0.0.1:$PORT_NGINX/sold-out.json" >/dev/null

cat >"$SCRATCH/join.lua" <<EOF
wrk.method = "POST"
wrk.body = '{"cmd":"join","fan":$LATE_FAN}'
wrk.headers["Authorization"] = "Bearer $LATE_SESSION"
wrk.headers["Content-Type"] = "application/json"
EOF

rate() { awk '/Requests\/sec/ {print $2}'; }
echo "wrk -t$THREADS -c$CONNS -d${DURATION}s, 2 shared cores, loopback"
ONSALE_OUT="$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$SCRATCH/join.lua" \
    "$BASE/api/events/9/commands")"
NGINX_OUT="$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency \
    "http://127.0.0.1:$PORT_NGINX/sold-out.json")"
echo "--- onsale (edge cache) ---"; echo "$ONSALE_OUT"
echo "--- nginx (static file) ---"; echo "$NGINX_OUT"
ONSALE_RATE="$(echo "$ONSALE_OUT" | rate)"
NGINX_RATE="$(echo "$NGINX_OUT" | rate)"
# Every answer must have been the edge's: the event actor saw none of them.
EDGE="$(curl -s "$BASE/metrics" | awk '/^onsale_edge_answers_total\{answer="sold_out"\}/ {print $2}')"
echo "onsale: $ONSALE_RATE answers/s; nginx: $NGINX_RATE responses/s;" \
    "ratio onsale/nginx: $(python3 -c "print(round($ONSALE_RATE/$NGINX_RATE, 3))")"
echo "edge sold_out answers counted by the gateway: $EDGE"
