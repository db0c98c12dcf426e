#!/usr/bin/env bash
# Reload latency: time from renaming a new version of a plugin into the
# watched directory to the first job that runs on it, for hello and
# thumbnail (10 swaps each; the new versions differ by a custom section).
# Needs a release build and redis-server.
#   scripts/bench-reload.sh [SWAPS]
set -euo pipefail
cd "$(dirname "$0")/.."
swaps=${1:-10}
spool=$PWD/target/release/spool
[ -x "$spool" ] || cargo build --release -p spool-runtime
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
worker=""
trap 'if [ -n "$worker" ]; then kill "$worker" 2>/dev/null || true; fi; redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
redis-server --port "$port" --save "" --daemonize yes --dir "$work" --logfile "$work/redis.log"
mkdir -p "$work/plugins"
cp target/plugins/hello.wasm target/plugins/thumbnail.wasm "$work/plugins/"
export SPOOL_REDIS="redis://127.0.0.1:$port"
"$spool" worker --plugins "$work/plugins" --artifact-cache "$work/cache" 2>"$work/worker.log" &
worker=$!
sleep 2
python3 - "$work" "$swaps" "$spool" <<'PY'
import json, os, statistics, subprocess, sys, time
sys.path.insert(0, "scripts")
from plugin_variant import variant
work, swaps, spool = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def version_of_a_job(plugin, inp, ct):
    out = subprocess.run([spool, "enqueue", plugin, "--input", inp, "--content-type", ct,
                          "--wait=30s", "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["version"]

inputs = {"hello": ('{"name":"x"}', "application/json"),
          "thumbnail": ("@examples/data/gradient.png", "image/png")}
for plugin, (inp, ct) in inputs.items():
    src = open(f"target/plugins/{plugin}.wasm", "rb").read()
    latencies = []
    for i in range(swaps):
        before = version_of_a_job(plugin, inp, ct)
        tmp = f"{work}/plugins/.{plugin}.tmp"
        with open(tmp, "wb") as f:
            f.write(variant(src, f"{i}-{time.time()}"))
        start = time.monotonic()
        os.rename(tmp, f"{work}/plugins/{plugin}.wasm")
        # Only one swap is in flight: any other version is the new one.
        while version_of_a_job(plugin, inp, ct) == before:
            pass
        latencies.append((time.monotonic() - start) * 1000)
    latencies.sort()
    print(f"{plugin}: rename -> first job on the new version, {swaps} swaps: "
          f"p50 {statistics.median(latencies):.0f} ms, max {latencies[-1]:.0f} ms")
PY
