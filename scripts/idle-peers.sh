#!/usr/bin/env bash
# Redis commands and Redis CPU per job at a steady low rate (one job at a
# time, as in issue 13's "at any rate"), for Spool and the peers of the
# side-by-side bench, on one private redis-server (no AOF), flushed before
# each system. Usage: scripts/idle-peers.sh [JOBS [RATE [ROUNDS]]]
# (default 1500 jobs at 200/s, one round).
# Needs the peers from ../shared/bench/peers/setup.sh (in $PEERS, default
# ~/.cache/spool-peers) and a release build with its plugins
# (`cargo build --release -p spool-runtime`, scripts/build-plugins.sh).
# Prints one JSON line per run. See docs/performance.md, "Idle pickup".
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
here="$root/scripts/idle_peers"
jobs=${1:-1500} rate=${2:-200} rounds=${3:-1}
peers=${PEERS:-$HOME/.cache/spool-peers}
spool="$root/target/release/spool"
for need in "$spool" "$root/target/plugins/hello.wasm" "$peers/node_modules/bullmq" "$peers/venv/bin/python"; do
  [[ -e $need ]] || { echo "idle-peers: $need not found (see the header of $0)" >&2; exit 1; }
done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --save '' --appendonly no --daemonize yes >/dev/null
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
fresh() { redis-cli -p "$port" flushall >/dev/null; }
for _ in $(seq "$rounds"); do
  fresh
  "$spool" bench --plugins "$root/target/plugins" --plugin hello --jobs "$jobs" --rate "$rate" \
    --redis "redis://127.0.0.1:$port" --json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(json.dumps({"system": "spool (records, leases, fair share)", "n": d["jobs"], "rate": '"$rate"',
  "commands_per_job": round(d["redis_commands_per_job"], 2), "redis_cpu_us_per_job": round(d["redis_cpu_us_per_job"], 1)}))'
  for keep in 0 1; do
    fresh
    (cd "$peers" && NODE_PATH="$peers/node_modules" node "$here/bullmq_idle.js" "$port" "$jobs" "$rate" "$keep")
  done
  fresh
  (cd "$here" && "$peers/venv/bin/python" rq_idle.py "$port" "$jobs" "$rate")
  fresh
  (cd "$here" && "$peers/venv/bin/python" celery_idle.py "$port" "$jobs" "$rate" 2>/dev/null)
done
