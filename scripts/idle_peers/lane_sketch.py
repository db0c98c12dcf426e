"""A sketch of a lean path for idle queues, to measure what it would cost
Redis per job: not Spool, and not a design Spool runs.

    python3 scripts/idle_peers/lane_sketch.py PORT [JOBS [RATE [MODE]]]

(defaults 1500 jobs at 200/s, MODE `full`), against a private
`redis-server` on PORT that it flushes. A producer enqueues one job at a
time; a worker thread waits with `BLMOVE` from the wake list into a list
of its own and acks each job. Prints one JSON line: Redis commands and
Redis CPU per job (`INFO commandstats`, `INFO cpu`), the time from
sending an enqueue to the wait returning its job, and in `custody` how
many jobs were handed over (the others took the normal path's stand-in).

- `full`: the enqueue checks that nothing waits (one `EXISTS`), writes the
  record and pushes the job itself onto the wake list; the worker's own
  list is its lease (a registry of live workers, not sketched, would
  bring a dead worker's jobs back); the ack reads the token (the fence),
  writes the outcome, its TTL, two counters and the kept list, and
  removes the job from the worker's list. `TIME` in both scripts.
- `min`: the clients' clocks instead of `TIME`, the removal from the
  worker's list as the fence (no read), no counters (a real worker
  would batch them) and no TTL on the kept list.
- `custody` (docs/lane.md, "Custody"): as `min`, but the enqueue pushes
  the job onto the worker's own list (when one `EXISTS`, its keys named
  with weights, says the worker is available and holds nothing, and
  nothing waits), with an entry `id token` behind it; the worker's
  `BLPOP` takes the job and leaves the entry, its lease; the ack's `LMOVE`
  of the entry into the kept list is the fence, the lease's end and the
  kept list's push at once. The worker's availability key is set once
  (a real worker would refresh it once a second) and there is no
  registry of live workers (a few commands a second, not per job).

See docs/performance.md, "What a script call costs". Needs redis-py.
"""
import json
import pathlib
import sys
import threading
import time

import redis

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from redis_idle import commands, cpu  # noqa: E402

ENQUEUE = {
    "full": """
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', t[2])
if redis.call('EXISTS', KEYS[3], KEYS[3], KEYS[3], KEYS[3], KEYS[4], KEYS[5], KEYS[6]) ~= 4 then return 0 end
redis.call('HSET', KEYS[1], 'enqueued_us', now, 'status', 'queued', 'token', now, 'attempt', '1',
  'lane', '1', 'plugin', ARGV[2], 'payload', ARGV[3])
return redis.call('RPUSH', KEYS[2], ARGV[1] .. '|' .. now .. '|' .. ARGV[3])
""",
    "min": """
if redis.call('EXISTS', KEYS[3], KEYS[3], KEYS[3], KEYS[3], KEYS[4], KEYS[5], KEYS[6]) ~= 4 then return 0 end
redis.call('HSET', KEYS[1], 'enqueued_us', ARGV[4], 'status', 'queued', 'token', ARGV[4],
  'attempt', '1', 'lane', '1', 'plugin', ARGV[2], 'payload', ARGV[3])
return redis.call('RPUSH', KEYS[2], ARGV[1] .. '|' .. ARGV[4] .. '|' .. ARGV[3])
""",
    # KEYS[3] the worker's availability (weight 4), KEYS[7] its own list
    # (weight 8), then the look (1 each): 4 means free and nothing waits.
    "custody": """
local job = ARGV[1] .. '|' .. ARGV[4] .. '|' .. ARGV[3]
if redis.call('EXISTS', KEYS[3], KEYS[3], KEYS[3], KEYS[3], KEYS[7], KEYS[7], KEYS[7], KEYS[7],
    KEYS[7], KEYS[7], KEYS[7], KEYS[7], KEYS[4], KEYS[5], KEYS[6]) ~= 4 then
  -- Not free (still acking its last job): the normal path's stand-in.
  redis.call('HSET', KEYS[1], 'enqueued_us', ARGV[4], 'status', 'queued', 'plugin', ARGV[2],
    'payload', ARGV[3])
  redis.call('RPUSH', KEYS[2], job)
  return 0
end
redis.call('HSET', KEYS[1], 'enqueued_us', ARGV[4], 'status', 'running', 'token', ARGV[4],
  'attempt', '1', 'worker', 'w1', 'plugin', ARGV[2], 'payload', ARGV[3])
redis.call('RPUSH', KEYS[7], job, ARGV[1] .. ' ' .. ARGV[4])
return 1
""",
}
ACK = {
    "full": """
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', t[2])
local f = redis.call('HMGET', KEYS[1], 'token', 'status')
if f[1] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'status', 'succeeded', 'finished_us', now, 'result', ARGV[3],
  'timings', ARGV[4])
redis.call('EXPIRE', KEYS[1], 86400)
redis.call('LREM', KEYS[2], 1, ARGV[1])
redis.call('HINCRBY', KEYS[3], 'succeeded', 1)
redis.call('HINCRBY', KEYS[4], 'succeeded', 1)
redis.call('LPUSH', KEYS[5], ARGV[5])
redis.call('EXPIRE', KEYS[5], 86400)
return 1
""",
    "min": """
if redis.call('LREM', KEYS[2], 1, ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', 'succeeded', 'finished_us', ARGV[6], 'result', ARGV[3],
  'timings', ARGV[4])
redis.call('EXPIRE', KEYS[1], 86400)
redis.call('LPUSH', KEYS[5], ARGV[5])
return 1
""",
    "custody": """
if ARGV[1] == '' then
  -- A job of the normal path's stand-in: its outcome only.
  redis.call('HSET', KEYS[1], 'status', 'succeeded', 'finished_us', ARGV[6], 'result', ARGV[3],
    'timings', ARGV[4])
  redis.call('EXPIRE', KEYS[1], 86400)
  return 1
end
local moved = redis.call('LMOVE', KEYS[2], KEYS[5], 'RIGHT', 'LEFT')
if moved ~= ARGV[1] then
  if moved then redis.call('LMOVE', KEYS[5], KEYS[2], 'LEFT', 'RIGHT') end
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'succeeded', 'finished_us', ARGV[6], 'result', ARGV[3],
  'timings', ARGV[4])
redis.call('EXPIRE', KEYS[1], 86400)
return 1
""",
}
Q, T = "spool:{default}", "spool:{default/t}"
WARM = 50


def main():
    port = int(sys.argv[1])
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
    rate = float(sys.argv[3]) if len(sys.argv) > 3 else 200
    mode = sys.argv[4] if len(sys.argv) > 4 else "full"
    r = redis.Redis(port=port)
    r.flushall()
    enqueue, ack = r.register_script(ENQUEUE[mode]), r.register_script(ACK[mode])
    custody = mode == "custody"
    own = f"{Q}:wake:w1:run" if custody else f"{Q}:lane:w1"
    r.set(f"{Q}:wake:w1:avail" if custody else f"{Q}:lane-on", 1)
    sent, picked = {}, []

    def keys(job):
        if custody:
            return [f"{T}:job:{job}", f"{Q}:wake", f"{Q}:wake:w1:avail", f"{Q}:ready",
                    f"{T}:paused", f"{Q}:paused", own]
        return [f"{T}:job:{job}", f"{Q}:wake", f"{Q}:lane-on", f"{Q}:ready", f"{T}:paused", f"{Q}:paused"]

    def work():
        w = redis.Redis(port=port)
        for _ in range(jobs + WARM):
            if custody:
                popped = w.blpop([f"{Q}:wake", own], 5)
                entry = popped and popped[1]
                handed = popped and popped[0].decode() == own
            else:
                entry = w.blmove(f"{Q}:wake", own, 5, "LEFT", "RIGHT")
            if entry is None:
                raise SystemExit("no job came within 5 s")
            picked.append((entry, time.time()))
            job, token, _ = entry.decode().split("|", 2)
            held = (f"{job} {token}" if handed else "") if custody else entry
            ack(keys=[f"{T}:job:{job}", own, f"{T}:stats", f"{Q}:stats", f"{T}:kept"],
                args=[held, token, '{"ok":1}', '{"run_us":12}', job, str(int(time.time() * 1e6))],
                client=w)

    worker = threading.Thread(target=work)
    worker.start()
    producer = redis.Redis(port=port)

    handed_over = []

    def send(job):
        sent[job] = time.time()
        handed_over.append(enqueue(keys=keys(job), args=[job, "hello", '{"name":"x"}',
                                                         str(int(time.time() * 1e6))],
                                   client=producer))

    for i in range(WARM):
        send(f"w{i}")
        time.sleep(1 / rate)
    time.sleep(0.2)
    cpu0, commands0 = cpu(r), commands(r)
    start = time.time()
    for i in range(jobs):
        send(f"j{i}")
        pause = start + (i + 1) / rate - time.time()
        if pause > 0:
            time.sleep(pause)
    worker.join()
    cpu1, commands1 = cpu(r), commands(r)
    waits = sorted(at - sent[e.decode().split("|", 1)[0]] for e, at in picked[WARM:])
    # (Less the two INFO calls of the first reading.)
    print(json.dumps({
        "mode": mode,
        "redis_commands_per_job": round((commands1 - commands0 - 2) / jobs, 2),
        "redis_cpu_us_per_job": round((cpu1 - cpu0) * 1e6 / jobs, 1),
        "handed_over": sum(1 for h in handed_over[WARM:] if h == 1) if custody else None,
        "pickup_ms": {"p50": round(waits[len(waits) // 2] * 1000, 3),
                      "p99": round(waits[int(len(waits) * 0.99)] * 1000, 3)},
    }))


if __name__ == "__main__":
    main()
