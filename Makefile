# meshdrop: `make demo` to try it, `make test` to check everything.
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)

LISTEN ?= 127.0.0.1:8080
SERVER := target/server/meshdrop-signal

.PHONY: demo test check build docs tools-build tools-test wasm server test-native test-browser test-e2e test-types bench clean

## demo: build everything and serve the page and signaling on http://$(LISTEN)
demo: build
	@echo "meshdrop demo: open http://$(LISTEN)/#room=lobby in two or more windows (Ctrl-C stops)"
	$(SERVER) --listen $(LISTEN) --www www

## test: the style and lint gates, then every suite (native, browser, end-to-end, TypeScript types)
test: tools-test check build test-native test-types test-browser test-e2e

## check: formatting, clippy on the host and wasm32 with warnings denied, docs without warnings
check: tools-build
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --test fuzz -- -D warnings  # test = false: not in --all-targets
	cargo clippy --target wasm32-unknown-unknown --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
	RUSTDOCFLAGS="-D warnings" cargo doc --target wasm32-unknown-unknown --no-deps -p meshdrop

## build: the npm package (pkg/), the demo's package (www/pkg/) and the server
build: tools-build wasm server

tools-build:
	@scripts/ensure-tools.sh build

tools-test:
	@scripts/ensure-tools.sh test

wasm:
	node scripts/build-wasm.mjs

server:
	cargo build --profile server -p meshdrop-signal

test-native:
	cargo test --workspace
	cargo test --release --test fuzz
	# The crate `cargo install meshdrop-signal` fetches: packaged and built on its own.
	cargo publish --dry-run --allow-dirty --quiet -p meshdrop-signal

## docs: the JS API reference, from the package's declarations, in target/docs/api
docs: tools-build wasm
	typedoc

test-types: wasm
	tsc -p tests/types
	typedoc --emit none  # every exported member documented, every link resolved

test-browser: server
	scripts/browser-tests.sh

test-e2e: wasm server
	node --test --test-concurrency=1 tests/e2e/

## bench: side-by-side benchmarks; results in bench/results/
bench: tools-test build
	node bench/transfer.mjs --cpu-profile 1
	node bench/engines.mjs
	node bench/hash.mjs
	node bench/mesh.mjs
	node bench/mesh.mjs --sizes 2,8 --reps 5 --settle 1000 --phases 1
	node bench/bundle.mjs
	node bench/signal.mjs
	node bench/multisource.mjs
	node bench/trust.mjs

clean:
	cargo clean
	rm -rf pkg www/pkg node_modules bench/results bench/hash/out bench/hash/target bench/hash/target-simd tests/bundlers/*/node_modules tests/bundlers/*/dist
