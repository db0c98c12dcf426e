#!/usr/bin/env python3
"""Replay the queue's scripts (enqueue, claim, ack of `hello`-like jobs)
against a Redis and print what each phase cost it per job.

    scripts/redis-cost.sh [--jobs 2000] [--tenants 1] [--per 64] [--claim 16]

runs this against a `redis-server` under callgrind and prints instructions
per job, which repeat to within a percent from run to run on a shared
machine (Redis' CPU time does not). Run alone (`--port P`), it prints
Redis' CPU time per job from `INFO cpu` instead.

The scripts are loaded as the worker loads them (runtime/src/queue/scripts.rs):
one function library, each prelude once in a block, each script a function.
Needs redis-py (`pip install redis`).
"""
import argparse
import os
import pathlib
import subprocess

import redis

ROOT = pathlib.Path(__file__).resolve().parent.parent
LUA = ROOT / "runtime/src/queue/lua"
NAMES = ("enqueue", "claim", "ack")

# What a worker writes when a `hello` job succeeds on its first attempt
# (sizes as in a real record: no empty fields, the short `logs` form, no
# `cache` for a plugin without one), in the worker's order.
RESULT = [
    ("run", b"1796176057692665 34 11 1"),
    ("version", b"103d728370adeee985f076678425b427cf5f9f99aecee34b660fb58fa31f9a64"),
    ("output", b'{"greeting":"Hello, xxxxxxxxxxxxxxxxxxxxx!"}'),
    ("logs", b'[["info","greeting xxxxxxxxxxxxxxxxxxxxx"]]'),
]
# (Before 2026-12-04's twelfth session: `started_us`, `host_calls` and
# `timings` instead of `run`, queue/run.rs; OLD_RESULT=1 replays those.)
if os.environ.get("OLD_RESULT"):
    RESULT = [
        ("started_us", b"1796176057692665"), RESULT[1], RESULT[2],
        ("host_calls", b"1"), ("timings", b'{"instantiate":34,"run":11}'), RESULT[3],
    ]
PAYLOAD = b'{"name":"xxxxxxxxxxxxxxxxxxxxx"}'


def unpack(packed):
    """The claim's jobs (MessagePack, as cmsgpack writes them): [[id, token, ...], ...],
    strings as bytes; enough of the format for that."""
    def value(at):
        tag = packed[at]
        if 0x90 <= tag <= 0x9f or tag in (0xdc, 0xdd):
            n, at = (tag & 0x0f, at + 1) if tag <= 0x9f else \
                (int.from_bytes(packed[at + 1:at + (3 if tag == 0xdc else 5)], "big"), at + (3 if tag == 0xdc else 5))
            items = []
            for _ in range(n):
                item, at = value(at)
                items.append(item)
            return items, at
        if 0xa0 <= tag <= 0xbf:
            n, at = tag & 0x1f, at + 1
        elif tag in (0xd9, 0xda, 0xdb):
            w = {0xd9: 1, 0xda: 2, 0xdb: 4}[tag]
            n, at = int.from_bytes(packed[at + 1:at + 1 + w], "big"), at + 1 + w
        elif tag in (0xc0, 0xc2):
            return None, at + 1
        elif tag <= 0x7f:
            return tag, at + 1
        else:
            raise SystemExit(f"unexpected MessagePack type {tag:#x}")
        return packed[at:at + n], at + n
    return value(0)[0]


def load(r, lua_dir):
    """Load the library; a callable per script: f(key, args, pipe)."""
    lib = (lua_dir / "lib.lua").read_text()
    body = "do\n" + lib
    for n in NAMES:
        script = (lua_dir / f"{n}.lua").read_text()
        # Load-time definitions first, as queue/scripts.rs places them.
        once, marker, call = script.partition("--[[ per call ]]\n")
        if not marker:
            once, call = "", script
        body += f"\ndo\n{once}\nredis.register_function('cost_{n}', function(KEYS, ARGV)\nbegin(KEYS)\n{call}\nend)\nend\n"
    r.function_load("#!lua name=cost\n" + body + "end\n", replace=True)
    return {n: (lambda n: lambda key, args, pipe: pipe.fcall(f"cost_{n}", 1, key, *args))(n) for n in NAMES}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=6379)
    ap.add_argument("--lua", type=pathlib.Path, default=LUA, help="folder of the scripts")
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--tenants", type=int, default=1)
    ap.add_argument("--per", type=int, default=64, help="jobs per enqueue call (per tenant)")
    ap.add_argument("--claim", type=int, default=16, help="jobs per claim and per ack call")
    ap.add_argument("--keep", type=int, default=1000, help="succeeded records kept per tenant (0: all)")
    ap.add_argument("--callgrind", action="store_true", help="dump callgrind counters per phase")
    a = ap.parse_args()
    r = redis.Redis(port=a.port)
    r.flushall()
    fn = load(r, a.lua)
    tenants = [f"spool:{{default/t{k}}}" for k in range(a.tenants)]

    def mark():
        if a.callgrind:
            subprocess.run(["callgrind_control", "-d"], capture_output=True)
        cpu = r.info("cpu")
        return cpu["used_cpu_user"] + cpu["used_cpu_sys"]

    # Scripts since 2026-12-04 (twelfth session) take the tenant's quotas
    # once per call and a plain job in five arguments; older copies
    # (--lua) take twelve a job.
    enqueue_lua = (a.lua / "enqueue.lua").read_text()
    compact = "opts '' stands for" in enqueue_lua
    # Since 2026-12-05 (sixteenth session) a fourth fixed argument: the
    # caller's reading of Redis' clock ('' here: the script reads TIME).
    clocked = "ARGV[4]  Redis' clock" in enqueue_lua
    marks = [mark()]
    n, pipe = 0, r.pipeline(transaction=False)
    while n < a.jobs:
        for t in tenants:
            args = (["86400", 0, 0] + ([""] if clocked else [])) if compact else ["86400"]
            start = len(args)
            for _ in range(min(a.per, a.jobs - n)):
                # (`spool enqueue` leaves out fields at their defaults.)
                if compact:
                    args += [f"01K{n:023d}", "", 0, "default/hello", PAYLOAD]
                else:
                    args += [f"01K{n:023d}", "", 0, "normal", 0, 0, "", 2, "plugin", "default/hello",
                             "payload", PAYLOAD]
                n += 1
            if len(args) > start:
                fn["enqueue"](t, args, pipe)
        pipe.execute()
    marks.append(mark())
    claimed = []
    claim_args = [86400, 604800, 10000, "w", a.claim, 30_000_000, 1_000_000, 0, 0, 0, 1, 4 << 20]
    while len(claimed) < a.jobs:
        for t in tenants:
            fn["claim"](t, claim_args, pipe)
        replies = pipe.execute()
        got = [(t, job[0], job[1]) for t, out in zip(tenants, replies) for job in unpack(out[6])]
        if not got:
            break
        claimed += got
    # Redis' clock as a worker knows it from its claims (read here, in the
    # claims' phase: the acks' cost is theirs alone).
    secs, micros = r.time()
    marks.append(mark())
    # Scripts since 2026-12-04 take ARGV[5], whether the tenant is known
    # to have no concurrency cap (as a worker knows from its claim);
    # older copies (--lua) do not.
    # And ARGV[6], Redis' clock as the worker reads it from its claims.
    ack_text = (a.lua / "ack.lua").read_text()
    extra = ["1"] if "ARGV[5]  '1' when" in ack_text else []
    if "ARGV[6]  Redis' clock" in ack_text:
        extra.append(secs * 1_000_000 + micros)
    # And ARGV[7], the kept list's refresh a worker asks once a minute.
    if "ARGV[7]  '1': refresh" in ack_text:
        extra.append(0)
    # And ARGV[8], the worker's lease (for an ack refused part-way).
    if "ARGV[8]  the worker's lease" in ack_text:
        extra.append(30_000_000)
    # And since the twelfth session, an outcome's letter, wait, plain and
    # field count in one argument.
    head = [f"s01{len(RESULT)}"] if "id, token, head," in ack_text else \
        ["succeeded", 0, 0, "1", len(RESULT)]
    by_tenant = {}
    for t, jid, token in claimed:
        by_tenant.setdefault(t, []).append((jid, token))
    for t, jobs in by_tenant.items():
        for s in range(0, len(jobs), a.claim):
            args = [86400, 604800, 10000, a.keep] + extra
            for jid, token in jobs[s:s + a.claim]:
                args += [jid, token] + head
                for field, value in RESULT:
                    args += [field, value]
            fn["ack"](t, args, pipe)
        # Every outcome applied (1): arguments the scripts misread (a copy
        # of older scripts, say) would otherwise count a cheaper no-op.
        for reply in pipe.execute():
            if any(v != 1 for v in reply[3:]):
                raise SystemExit(f"an ack was not applied: {reply[3:13]}...")
    marks.append(mark())
    if len(claimed) != a.jobs:
        raise SystemExit(f"claimed {len(claimed)} of {a.jobs} jobs")
    if not a.callgrind:
        costs = [(b - a_) / a.jobs * 1e6 for a_, b in zip(marks, marks[1:])]
        print("Redis CPU µs per job: " + "  ".join(f"{n} {c:.1f}" for n, c in zip(NAMES, costs))
              + f"  total {sum(costs):.1f}")


if __name__ == "__main__":
    main()
