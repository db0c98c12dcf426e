#!/usr/bin/env bash
# Fleet deploy latency: `spool plugins deploy` and `spool plugins rollback`
# against two workers (separate artifact caches, as on two machines), for
# hello and thumbnail. The figure is the one the command prints: from the
# version pinned in Redis until every worker reports serving it (polled
# every 20 ms). Needs a release build and redis-server.
#   scripts/bench-deploy.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-10}
spool=$PWD/target/release/spool
[ -x "$spool" ] || cargo build --release -p spool-runtime
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
workers=()
trap 'for w in "${workers[@]}"; do kill "$w" 2>/dev/null || true; done; redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
redis-server --port "$port" --save "" --daemonize yes --dir "$work" --logfile "$work/redis.log"
export SPOOL_REDIS="redis://127.0.0.1:$port"
for w in 1 2; do
  mkdir -p "$work/plugins-$w"
  cp target/plugins/hello.wasm target/plugins/thumbnail.wasm "$work/plugins-$w/"
  "$spool" worker --id "w$w" --plugins "$work/plugins-$w" --artifact-cache "$work/cache-$w" 2>"$work/worker-$w.log" &
  workers+=($!)
done
sleep 2
python3 - "$work" "$rounds" "$spool" <<'PY'
import re, statistics, subprocess, sys, time
sys.path.insert(0, "scripts")
from plugin_variant import variant
work, rounds, spool = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def confirmed_ms(args):
    out = subprocess.run([spool, "plugins", *args, "--wait", "30s"],
                         capture_output=True, text=True)
    found = re.search(r"2 of 2 workers serve \w+ \((\d+) ms\)", out.stdout)
    if out.returncode != 0 or not found:
        sys.exit(f"spool plugins {' '.join(args)} failed: {out.stdout}{out.stderr}")
    return int(found.group(1))

def line(what, ms):
    ms.sort()
    print(f"  {what}: p50 {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms")

for plugin in ("hello", "thumbnail"):
    src = open(f"target/plugins/{plugin}.wasm", "rb").read()
    deploys, rollbacks = [], []
    for i in range(rounds):
        path = f"{work}/{plugin}-{i}.wasm"
        with open(path, "wb") as f:
            f.write(variant(src, f"{i}-{time.time()}"))
        deploys.append(confirmed_ms(["deploy", path, "--as", plugin]))
        # Back to the version before: each worker compiled it once already
        # (its artifact is in the worker's cache).
        rollbacks.append(confirmed_ms(["rollback", plugin]))
    print(f"{plugin}, 2 workers, {rounds} rounds (pinned in Redis -> both workers serve it):")
    line("deploy of a new version", deploys)
    line("rollback to the previous version", rollbacks)
PY
