#!/usr/bin/env bash
# Installs what the build and tests need, only where missing or at the wrong version,
# so a second run takes well under a second. Usage: ensure-tools.sh [build|test]
#   build: Rust wasm target, wasm-pack, wasm-bindgen-cli, npm packages (wasm-opt)
#   test:  the same, plus Chromium, ChromeDriver, Firefox ESR and redis-server (instances sharing
#          rooms, signaling/tests/cluster.rs); as root also coturn, nftables and
#          iproute2 for the tests across real NATs (which need root and skip without it)
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-test}"
WASM_PACK_VERSION=0.15.1

say() { printf '\033[1mmeshdrop:\033[0m %s\n' "$*" >&2; }
as_root_or_explain() { # $1 = packages, $2 = what they are for
  if [ "$(id -u)" = 0 ]; then
    say "installing $1 (apt) for $2"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $1 >/dev/null
  else
    say "missing $1 ($2): run 'sudo apt-get install -y $1' and retry"
    exit 1
  fi
}

command -v cargo >/dev/null || { say "Rust is missing: install it from https://rustup.rs and retry"; exit 1; }
command -v node >/dev/null && command -v npm >/dev/null || as_root_or_explain "nodejs npm" "the build scripts and tests"

for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    say "adding Rust component $component (make check)"
    rustup component add "$component"
  fi
done

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding Rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

if [ "$(wasm-pack --version 2>/dev/null | awk '{print $2}')" != "$WASM_PACK_VERSION" ]; then
  say "installing wasm-pack $WASM_PACK_VERSION (about 2 minutes, once)"
  cargo install wasm-pack --version "$WASM_PACK_VERSION" --locked
fi

# wasm-pack uses the wasm-bindgen on PATH only at exactly the version in Cargo.lock.
bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$bindgen_version" ]; then
  say "installing wasm-bindgen-cli $bindgen_version (about 2 minutes, once)"
  # Not --locked: its shipped lock pins a crate version the registry no longer has.
  cargo install wasm-bindgen-cli --version "$bindgen_version"
fi

# npm's binaryen provides wasm-opt (never Debian's: it breaks wasm-bindgen output).
if [ ! -x node_modules/.bin/wasm-opt ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ "$what" = test ]; then
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    as_root_or_explain "chromium chromium-driver" "the browser tests"
  fi
  if [ ! -x /usr/bin/firefox-esr ]; then
    as_root_or_explain "firefox-esr" "the cross-engine tests (tests/e2e/cross-engine.test.mjs)"
  fi
  if ! command -v redis-server >/dev/null; then
    as_root_or_explain "redis-server" "the tests of instances sharing rooms (signaling/tests/cluster.rs)"
  fi
  if [ "$(id -u)" = 0 ]; then
    missing=""
    command -v turnserver >/dev/null || missing+=" coturn"
    command -v nft >/dev/null || missing+=" nftables"
    { command -v ip && command -v tc; } >/dev/null || missing+=" iproute2"
    [ -z "$missing" ] || as_root_or_explain "${missing# }" "the tests across NATs (tests/e2e/nat.test.mjs)"
  fi
fi
