#!/usr/bin/env bash
# Worker start-up time with N plugins, with and without the artifact cache:
# time from `spool worker` starting until its plugins are loaded (its
# "worker starting" line, logged just before it connects and claims). The plugins are N distinct versions of hello (a custom section
# makes each digest differ). Needs a release build and redis-server.
#   scripts/bench-startup.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100}
spool=$PWD/target/release/spool
[ -x "$spool" ] || cargo build --release -p spool-runtime
work=$(mktemp -d)
port=""
trap 'if [ -n "$port" ]; then redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; fi; rm -rf "$work"' EXIT
mkdir -p "$work/plugins"
for i in $(seq -w 0 $((n - 1))); do
  python3 scripts/plugin_variant.py target/plugins/hello.wasm "$work/plugins/p$i.wasm" "$i"
done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --save "" --daemonize yes --dir "$work" --logfile "$work/redis.log"
sleep 0.3
startup() {
  local start end
  start=$(date +%s%N)
  SPOOL_LOG=info "$spool" worker --redis "redis://127.0.0.1:$port" --plugins "$work/plugins" "$@" 2>&1 |
    while read -r line; do
      if [[ $line == *"worker starting"* ]]; then
        end=$(date +%s%N)
        echo "$(( (end - start) / 1000000 )) ms"
        pkill -TERM -f -- "--plugins $work/plugins" || true
      fi
    done
}
echo "start-up with $n plugins, no artifact cache: $(startup --no-artifact-cache)"
echo "start-up with $n plugins, cold cache:        $(startup --artifact-cache "$work/cache")"
for i in 1 2 3; do
  echo "start-up with $n plugins, warm cache:        $(startup --artifact-cache "$work/cache")"
done
