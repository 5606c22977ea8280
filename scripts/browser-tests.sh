#!/usr/bin/env bash
# Runs the wasm-bindgen browser tests (tests/web.rs) in headless Chromium against a
# live signaling server started here and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
port=$(node scripts/free-port.mjs)
./target/server/meshdrop-signal --listen "127.0.0.1:$port" >/tmp/meshdrop-browser-tests-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  node -e "fetch('http://127.0.0.1:$port/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))" && break
  sleep 0.05
done
export MESHDROP_TEST_SIGNAL_URL="ws://127.0.0.1:$port/ws"
export CHROMEDRIVER=/usr/bin/chromedriver
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$PWD/tests/webdriver.json"
export WASM_BINDGEN_TEST_TIMEOUT=120
cargo test --target wasm32-unknown-unknown --test web
