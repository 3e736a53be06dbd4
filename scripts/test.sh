#!/usr/bin/env bash
# The one command that runs every test of onsale, on a fresh Debian machine
# with the Rust toolchain (see README.md). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: a C compiler (blake3's assembly, SQLite is bundled),
# libclang (bindgen, for compiling the FoundationDB backend), headless
# Chromium with its WebDriver (the fan page's browser tests,
# tests/tests/browser.rs), and tmux (onsalectl top, driven in a terminal by
# ctl/tests/onsalectl.rs). Checked, not assumed; installed when missing.
need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium chromium-driver)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
# openssl: the mesh TLS test makes its CA and certificates with it.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# nats-server: the change feed's broker, run with JetStream by the feed's
# tests (tests/src/nats.rs). Debian installs it in /usr/sbin.
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "== installing ${need[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "missing system packages: ${need[*]} (apt-get install ${need[*]})" >&2
        exit 1
    fi
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo clippy --features fdb (FoundationDB backend: compiled, not run here)"
cargo clippy -p onsale-cluster -p onsale-node --all-targets --locked --features fdb -- -D warnings
# DuckDB reads the Parquet export (node/tests/export.rs runs
# scripts/duckdb-check.py when python3 can import duckdb; PyPI's wheel).
python3 -c 'import duckdb' 2>/dev/null || timeout 180 pip install -q duckdb \
    || echo "duckdb not installed: the export's DuckDB check is skipped"
echo "== cargo test"
cargo test --workspace --locked
echo "== the run command works (the README's: a node with the demo events and the fan page)"
# The test profile: the binary and libraries `cargo test` built already (and
# the process tests started), not a second build of the workspace.
cargo build --quiet --locked --profile test -p onsale-node --bin onsale
run_dir="$(mktemp -d)"
port=$((20000 + RANDOM % 20000))
target/debug/onsale --demo --listen "127.0.0.1:$port" --store "$run_dir/demo.db" > "$run_dir/out.txt" 2> "$run_dir/err.txt" &
run_pid=$!
trap 'kill "$run_pid" 2>/dev/null || true; rm -rf "$run_dir"' EXIT
for _ in $(seq 300); do
    grep -q "onsale serving http://" "$run_dir/out.txt" && break
    kill -0 "$run_pid" 2>/dev/null || { cat "$run_dir/err.txt" >&2; exit 1; }
    sleep 0.1
done
grep "onsale serving http://" "$run_dir/out.txt"
curl -fsS "http://127.0.0.1:$port/" | grep -q "app.js"
curl -fsS "http://127.0.0.1:$port/api/events" | grep -q "Onsale demo night"
curl -fsS "http://127.0.0.1:$port/healthz" | grep -q ok
kill "$run_pid"
echo "== the deterministic demo table"
cargo run --quiet --locked --profile test -p onsale-node --bin onsale -- --demo --fans 1500 > target/demo.txt
grep -q "Every invariant held after every step" target/demo.txt
tail -n 2 target/demo.txt
