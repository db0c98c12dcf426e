#!/usr/bin/env bash
# Quick start, part two: run every test (builds plugins/ on the way).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace "$@"
