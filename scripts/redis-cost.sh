#!/usr/bin/env bash
# Redis instructions per job of the queue's enqueue, claim and ack scripts,
# counted by callgrind on a private redis-server (repeatable to within a
# percent on a busy machine, unlike CPU time). Arguments go to
# scripts/redis-cost.py, e.g. `--tenants 100 --per 5 --claim 5`.
# KEEP=DIR keeps callgrind's dumps there (cg.3 the claims, cg.4 the acks)
# for callgrind_annotate; a redis-server built with symbols first on PATH
# names Redis' own functions (docs/performance.md).
# Needs valgrind, redis-server and redis-py. See docs/performance.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for tool in valgrind callgrind_control redis-server; do
  command -v "$tool" >/dev/null || { echo "redis-cost: $tool not found (apt-get install -y valgrind redis-server)" >&2; exit 1; }
done
if [[ -n ${KEEP:-} ]]; then
  out="$KEEP"; mkdir -p "$out"; rm -f "$out"/cg*
  trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true' EXIT
else
  out="$(mktemp -d)"
  trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$out"' EXIT
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
  redis-server --port "$port" --save '' --appendonly no >/dev/null 2>"$out/log" &
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.2; done
jobs=2000
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do [[ ${args[i]} == --jobs ]] && jobs=${args[i+1]}; done
python3 "$here/redis-cost.py" --port "$port" --callgrind "$@"
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
wait
# Dumps: .1 start-up, .2 enqueue, .3 claim, .4 ack.
python3 - "$out" "$jobs" <<'EOF'
import re, sys
out, jobs = sys.argv[1], int(sys.argv[2])
ir = lambda k: int(re.search(r"^summary: (\d+)", open(f"{out}/cg.{k}").read(), re.M).group(1)) // jobs
e, c, a = ir(2), ir(3), ir(4)
print(f"Redis instructions per job: enqueue {e}  claim {c}  ack {a}  total {e + c + a}")
EOF
