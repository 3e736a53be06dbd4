#!/usr/bin/env bash
# The one command that runs every test of onsale, on a fresh Debian machine
# with the Rust toolchain (see README.md). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: none are needed yet beyond the toolchain and a C
# compiler (blake3 builds its assembly with cc). Checked, not assumed.
if ! command -v cc >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq gcc >/dev/null
    else
        echo "a C compiler (gcc) is required: apt-get install gcc" >&2
        exit 1
    fi
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== the run command works"
cargo run --quiet --locked -p onsale-gateway --bin onsale -- --demo --fans 1500 > target/demo.txt
grep -q "Every invariant held after every step" target/demo.txt
tail -n 2 target/demo.txt
