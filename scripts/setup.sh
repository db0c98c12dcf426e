#!/usr/bin/env bash
# Install what building and testing Spool needs and a fresh machine may lack:
# the wasm32-wasip2 Rust target (plugins are built for it).
set -euo pipefail
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "==> installing the wasm32-wasip2 Rust target"
  rustup target add wasm32-wasip2
fi
