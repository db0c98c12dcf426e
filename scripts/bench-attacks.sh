#!/usr/bin/env bash
# The hostile-tenant attack table (issue 11, docs/security.md), run against
# a release `spool worker` and a private redis-server; one line per attack.
# Needs `cargo build --release -p spool-runtime` and the fixtures built by
# the tests (`scripts/test.sh`, into target/plugins). Usage:
#   scripts/bench-attacks.sh          (PORT=7391 by default)
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
S=${SPOOL:-$ROOT/target/release/spool}
P=$ROOT/target/plugins
for need in "$S" "$P/attacker.wasm" "$P/hello.wasm" "$P/kv.wasm"; do
  [ -e "$need" ] || { echo "missing $need: run cargo build --release -p spool-runtime and scripts/test.sh first" >&2; exit 2; }
done
W=$(mktemp -d)
PORT=${PORT:-7391}
redis-server --port "$PORT" --save '' --appendonly no --daemonize yes --dir "$W" --logfile "$W/redis.log" >/dev/null
sleep 0.3
export SPOOL_REDIS=redis://127.0.0.1:$PORT
R="redis-cli -p $PORT"
mkdir -p "$W/plugins/mallory" "$W/plugins/acme"
cp "$P/attacker.wasm" "$W/plugins/mallory/attacker.wasm"
printf 'timeout = "1s"\nmemory = "256MiB"\n' > "$W/plugins/mallory/attacker.toml"
cp "$P/hello.wasm" "$W/plugins/acme/hello.wasm"
cp "$P/kv.wasm" "$W/plugins/acme/kv.wasm"
"$S" worker --plugins "$W/plugins" --concurrency 2 --memory 256MiB --no-artifact-cache --backoff 100ms > "$W/worker.log" 2>&1 &
WPID=$!
trap 'kill $WPID 2>/dev/null; wait $WPID 2>/dev/null; $R shutdown nosave >/dev/null 2>&1; rm -rf "$W"' EXIT
for _ in $(seq 300); do
  $R hlen 'spool:{plugins}:workers' 2>/dev/null | grep -qv '^0$' && break
  sleep 0.2
done
attack() { "$S" enqueue mallory/attacker -i "$1" --max-attempts 1 2>/dev/null; }
field() { $R hget "spool:{default/mallory}:job:$1" "$2"; }
bytes() { $R hstrlen "spool:{default/mallory}:job:$1" "$2"; }
wait_done() { for _ in $(seq 600); do s=$(field "$1" status); [ "$s" = dead ] || [ "$s" = succeeded ] && return; sleep 0.1; done; }
# (The start is the first number of `run`; `started_us` in records of
# workers before 2026-12-04.)
started() { local r; r=$(field "$1" run); [ -n "$r" ] && echo "${r%% *}" || field "$1" started_us; }
held() { echo $(( ($(field "$1" finished_us) - $(started "$1")) / 1000 )); }
mem() { $R info memory | awk -F: '/^used_memory:/ {print $2+0}'; }

# 1. Two sleepers fill both threads; another tenant's job right behind them.
a=$(attack '{"attack":"sleep","ms":20000}'); b=$(attack '{"attack":"sleep","ms":20000}')
t0=$(date +%s%N)
"$S" enqueue acme/hello -i '{"name":"V"}' --wait=60s >/dev/null
victim=$(( ($(date +%s%N) - t0) / 1000000 ))
wait_done "$a"; wait_done "$b"
echo "sleep 20 s (timeout 1 s): thread held $(held "$a") ms and $(held "$b") ms, error kind $(field "$a" error | sed 's/.*"kind":"\([^"]*\)".*/\1/'); acme/hello behind both: done in $victim ms"

# 2. A 64 MiB fatal message and 64 MiB invalid-input fields.
f=$(attack '{"attack":"fatal","bytes":67108864}'); wait_done "$f"
i=$(attack '{"attack":"invalid","bytes":67108864}'); wait_done "$i"
echo "invalid error: $(field "$i" error | cut -c1-200)"; echo "fatal 64 MiB: error field $(bytes "$f" error) bytes; invalid 64 MiB x3: error field $(bytes "$i" error) bytes; whole records $($R memory usage "spool:{default/mallory}:job:$f") and $($R memory usage "spool:{default/mallory}:job:$i") bytes"

# 3. One 32 MiB log line.
before=$(stat -c %s "$W/worker.log")
l=$(attack '{"attack":"log","bytes":33554432}'); wait_done "$l"
after=$(stat -c %s "$W/worker.log")
echo "log 32 MiB line: worker log +$((after - before)) bytes; job logs field $(bytes "$l" logs) bytes; status $(field "$l" status)"

# 4. KV flood: 1,000 values of 1 MiB in a 1 s job; default quotas, then 8 MiB.
m0=$(mem)
k=$(attack '{"attack":"kv_flood","bytes":1048576,"count":1000}'); wait_done "$k"
m1=$(mem)
echo "kv flood, default quota (64 MiB): Redis +$(( (m1 - m0) / 1048576 )) MiB; error: $(field "$k" error | sed 's/.*"message":"\([^"]*\)".*/\1/' | cut -c1-150)"
"$S" tenants set mallory --kv-bytes 8MiB >/dev/null; sleep 2.5  # workers read limits every 2 s
$R --scan --pattern 'spool:{kv:mallory}*' | xargs -r $R del >/dev/null
m0=$(mem)
k=$(attack '{"attack":"kv_flood","bytes":1048576,"count":1000}'); wait_done "$k"
m1=$(mem)
echo "kv flood, quota 8 MiB: Redis +$(( (m1 - m0) / 1048576 )) MiB; $("$S" tenants show mallory | grep kv-bytes)"
t0=$(date +%s%N)
"$S" enqueue acme/kv -i '{"op":"set","key":"k","value":"v"}' --wait=60s >/dev/null && echo "acme/kv set meanwhile: ok in $(( ($(date +%s%N) - t0) / 1000000 )) ms"

# 5. exit(3).
e=$(attack '{"attack":"exit","code":3}'); wait_done "$e"
echo "exit(3): status $(field "$e" status), attempts $(field "$e" attempt), kind $(field "$e" error | sed 's/.*"kind":"\([^"]*\)".*/\1/')"
echo "worker log: $(stat -c %s "$W/worker.log") bytes in all; worker RSS peak $(grep VmHWM /proc/$WPID/status | awk '{print $2, $3}')"
