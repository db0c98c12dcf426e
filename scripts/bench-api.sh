#!/usr/bin/env bash
# The HTTP API's cost: one job's round trip (enqueue, then wait for its
# result) through `spool serve` against the same with plain Redis commands,
# interleaved in one run, on a private redis-server with one worker
# serving acme/hello. Prints p50/p90/p99 of each and their ratio.
# Needs a release build, redis-server and redis-py.
#   scripts/bench-api.sh [N]   (default 500 round trips of each)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-500}
spool=$PWD/target/release/spool
[ -x "$spool" ] || cargo build --release -p spool-runtime
[ -f target/plugins/hello.wasm ] || scripts/build-plugins.sh
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
redis-server --port "$port" --save "" --appendonly no --daemonize yes --dir "$work" --logfile "$work/redis.log"
sleep 0.3
url="redis://127.0.0.1:$port"
mkdir -p "$work/plugins/acme"
cp target/plugins/hello.wasm "$work/plugins/acme/"
SPOOL_LOG=warn "$spool" worker --redis "$url" --plugins "$work/plugins" --artifact-cache "$work/art" 2>"$work/worker.log" &
pids+=($!)
SPOOL_LOG=warn "$spool" serve --redis "$url" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
api=$(sed -n 's|.*listening on http://||p' "$work/serve.out")
token=$("$spool" tokens create --redis "$url" --tenant acme --scopes submit,read 2>/dev/null)
python3 scripts/bench_api.py --redis-port "$port" --api "$api" --token "$token" --n "$n"
