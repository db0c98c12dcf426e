#!/usr/bin/env bash
# Quick start, part one: build everything and run the example plugins.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "==> building the plugins (wasm32-wasip2 components)"
scripts/build-plugins.sh
echo "==> building spool"
cargo build -p spool-runtime
spool=target/debug/spool
show() { printf '\n$ spool %s\n' "$*"; "$spool" "$@"; }

show call target/plugins/hello.wasm --input '{"name":"Ada"}'
show call target/plugins/markdown.wasm --input @examples/data/hello.md
show call target/plugins/thumbnail.wasm --input @examples/data/gradient.png \
  -c width=64 -c height=64 -o target/thumbnail.png
echo "(wrote target/thumbnail.png: $(wc -c < target/thumbnail.png) bytes)"

echo
echo "==> what the sandbox does to hostile handlers"
show call target/plugins/hello.wasm --input '{"name":""}' || echo "(exit $?)"
show call target/plugins/spin.wasm --input '{}' --timeout 300ms || echo "(exit $?)"
show call target/plugins/memory_hog.wasm --input '{}' --memory 16MiB || echo "(exit $?)"
show call target/plugins/panics.wasm --input '{}' || echo "(exit $?)"
show call target/plugins/opens_socket.wasm --input '{"addr":"127.0.0.1:6379"}' || echo "(exit $?)"
show call target/plugins/hello.wasm --input '{"name":"Ada"}' --json
