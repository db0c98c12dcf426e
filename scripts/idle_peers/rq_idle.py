"""RQ at a steady low rate: one SimpleWorker in a subprocess, one enqueue
every 1/RATE s (results kept, RQ's default), then Redis' commands and CPU
per job from the moment the worker is ready.
usage: python rq_idle.py PORT N RATE"""
import json, subprocess, sys, time
import redis
from rq import Queue
from redis_idle import cpu, commands

port, n, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
r = redis.Redis(port=port)
q = Queue("idle", connection=r)
worker = (f"import redis; from rq import Queue, SimpleWorker; r = redis.Redis(port={port}); "
          "SimpleWorker([Queue('idle', connection=r)], connection=r).work(logging_level='WARNING')")
w = subprocess.Popen([sys.executable, "-c", worker], cwd=sys.path[0])
time.sleep(2)
r.config_resetstat()
cpu0 = cpu(r)
t0 = time.time()
for i in range(n):
    q.enqueue("rq_noop.noop", i)
    time.sleep(max(0, t0 + (i + 1) / rate - time.time()))
while len(q.finished_job_registry) < n:
    time.sleep(0.05)
cpu1 = cpu(r)
calls = commands(r)
w.terminate(); w.wait()
print(json.dumps({"system": "rq", "n": n, "rate": rate, "commands_per_job": round(calls / n, 2),
                  "redis_cpu_us_per_job": round((cpu1 - cpu0) * 1e6 / n, 1)}))
