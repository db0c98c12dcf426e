#!/usr/bin/env bash
# Build every crate in plugins/ into a WebAssembly component and copy them to
# target/plugins/ (the same place tests/build.rs puts them).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --target wasm32-wasip2 \
  --manifest-path plugins/Cargo.toml --target-dir target/wasm
mkdir -p target/plugins
cp target/wasm/wasm32-wasip2/release/*.wasm target/plugins/
