#!/usr/bin/env bash
# Quick start, part one: build everything, start `spool dev` (a private
# redis-server plus a worker), and put jobs through the queue.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "==> building the plugins (wasm32-wasip2 components)"
scripts/build-plugins.sh
echo "==> building spool"
cargo build --release -p spool-runtime
spool=$PWD/target/release/spool
show() { printf '\n$ spool %s\n' "$*"; "$spool" "$@"; }

echo "==> one job, right here, no queue"
show call target/plugins/hello.wasm --input '{"name":"Ada"}'

echo
echo "==> spool dev: private redis-server (data in .spool/redis) and a worker on .spool/plugins"
mkdir -p .spool/plugins
cp target/plugins/{hello,markdown,thumbnail,introspect}.wasm .spool/plugins/
# thumbnail's results are cached for an hour (its manifest).
printf '[cache]\nttl = "1h"\n' > .spool/plugins/thumbnail.toml
"$spool" dev --plugins .spool/plugins --backoff 200ms > .spool/dev.log 2>&1 &
dev=$!
trap 'kill -INT $dev 2>/dev/null; wait $dev 2>/dev/null || true' EXIT
# Ready when the worker says so (a .spool/redis.url left by an earlier,
# killed run may point at nothing).
for _ in $(seq 1 600); do grep -q "worker starting" .spool/dev.log 2>/dev/null && break; sleep 0.1; done
echo "(worker log: .spool/dev.log)"

show enqueue hello --input '{"name":"Ada"}' --wait
show enqueue markdown --input @examples/data/hello.md --wait
id=$("$spool" enqueue thumbnail --input @examples/data/gradient.png --content-type image/png)
printf '\n$ spool enqueue thumbnail --input @examples/data/gradient.png --content-type image/png\n%s\n' "$id"
sleep 1
show job "$id"

echo
echo "==> the result cache: the same thumbnail again is answered without running anything"
printf '\n$ spool enqueue thumbnail --input @examples/data/gradient.png --content-type image/png --wait --json | grep cache\n'
"$spool" enqueue thumbnail --input @examples/data/gradient.png --content-type image/png --wait --json | grep '"cache'
sleep 1.2  # workers send their counts every second
show cache stats
show enqueue hello --input '{"name":"Later"}' --delay 1s --wait
show enqueue introspect --input '{"fail_before_attempt":3}' --wait
show enqueue hello --input '{"name":""}' --wait || echo "(exit $?)"
show dead list

echo
echo "==> hot deploys: a new version of hello on every worker, its history, and back"
python3 scripts/plugin_variant.py target/plugins/hello.wasm .spool/hello-v2.wasm demo-v2
show plugins deploy .spool/hello-v2.wasm --as hello
show plugins history hello
show plugins rollback hello
show plugins list
show plugins unpin hello
show bench --plugins target/plugins --plugin hello --jobs 20000
