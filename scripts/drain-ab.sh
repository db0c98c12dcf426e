#!/usr/bin/env bash
# run.sh's Spool drain alone, for two builds interleaved on one private
# redis-server (no AOF, as run.sh starts it): bulk-enqueue N `hello` jobs,
# start `spool worker`, and time until `spool:{default}:stats` says N
# succeeded (as ../shared/bench/peers/run.sh times it), with Redis' CPU
# per job over the drain. Needs target/plugins/hello.wasm.
#
# usage: scripts/drain-ab.sh BEFORE_SPOOL AFTER_SPOOL [N] [ROUNDS]
#   e.g. scripts/drain-ab.sh /tmp/spool_before target/release/spool 100000 4
set -euo pipefail
before=${1:?the build before (a spool binary)}; after=${2:?the build after}
N=${3:-100000}; rounds=${4:-4}
root=$(cd "$(dirname "$0")/.." && pwd)
port=$((20000 + RANDOM % 20000))
redis-server --port $port --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >/dev/null
trap 'redis-cli -p $port shutdown nosave >/dev/null 2>&1; rm -rf "$d"' EXIT
sleep 0.5
d=$(mktemp -d)
cp "$root/target/plugins/hello.wasm" "$d/"
python3 -c "import json,sys; [print(json.dumps({'name': 'n%d' % i})) for i in range(int(sys.argv[1]))]" "$N" > "$d/jobs.jsonl"
R=redis://127.0.0.1:$port
cpu() { redis-cli -p $port info cpu | awk -F: '/used_cpu_user:|used_cpu_sys:/{s+=$2} END{print s}'; }
for round in $(seq "$rounds"); do
  for which in before after; do
    S=${!which}
    redis-cli -p $port flushall >/dev/null
    "$S" enqueue hello --redis $R --bulk "$d/jobs.jsonl" >/dev/null 2>&1
    t1=$(date +%s.%N); c0=$(cpu)
    "$S" worker --redis $R --plugins "$d" --artifact-cache "$d/art" >"$d/w.log" 2>&1 & w=$!
    while [ "$(redis-cli -p $port hget 'spool:{default}:stats' succeeded)" != "$N" ]; do sleep 0.01; done
    t2=$(date +%s.%N); c1=$(cpu)
    kill $w; wait $w 2>/dev/null || true
    python3 -c "print('round $round $which: drain', round($N/($t2-$t1)), 'jobs/s, Redis', round(($c1-$c0)*1e6/$N, 2), 'us per job')"
  done
done
