#!/usr/bin/env bash
# Quick start, part two: run every test (builds plugins/ on the way).
# Ends with one summary line, "N passed, N failed", over all test binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mkdir -p target
log=target/test-output.log
status=0
cargo test --workspace "$@" 2>&1 | tee "$log" || status=$?
# The queue's topics again against a private Redis Cluster (3 masters,
# 3 replicas: tests/src/backend.rs), proving the same behaviour there.
# Only for a whole run: arguments narrow the run above to what was asked.
if [ $# -eq 0 ]; then
  # (--workspace as above: the same features, so nothing is rebuilt.)
  SPOOL_TEST_REDIS=cluster cargo test --workspace --test all -- \
    queue:: queue_cli:: reliability:: reused_ids:: fairness:: quotas:: tenants:: cache:: \
    2>&1 | tee -a "$log" || status=$?
fi
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log" | tee target/test-summary.txt
exit "$status"
