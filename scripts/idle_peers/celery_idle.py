"""Celery on a Redis broker (no result backend, as in the side-by-side
bench) at a steady low rate: one worker (prefork, 4 processes), one task
every 1/RATE s, then Redis' commands and CPU per job from the moment the
worker is ready. The task's own INCR of `done` is not counted.
usage: python celery_idle.py PORT N RATE"""
import json, os, subprocess, sys, time
port, n, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
os.environ["BENCH_PORT"] = str(port)
from celery_tasks import app, noop
import redis
from redis_idle import cpu, commands

r = redis.Redis(port=port)
w = subprocess.Popen([sys.executable, "-m", "celery", "-A", "celery_tasks", "worker", "-c", "4",
                      "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                     cwd=sys.path[0], env=os.environ, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
# Ready once it has taken a first task.
noop.apply_async((-1,), ignore_result=True)
while int(r.get("done") or 0) < 1:
    time.sleep(0.05)
r.config_resetstat()
cpu0 = cpu(r)
t0 = time.time()
with app.producer_or_acquire() as p:
    for i in range(n):
        noop.apply_async((i,), producer=p, ignore_result=True)
        time.sleep(max(0, t0 + (i + 1) / rate - time.time()))
while int(r.get("done") or 0) < n + 1:
    time.sleep(0.05)
cpu1 = cpu(r)
calls = commands(r) - n
w.terminate(); w.wait()
print(json.dumps({"system": "celery", "n": n, "rate": rate, "commands_per_job": round(calls / n, 2),
                  "redis_cpu_us_per_job": round((cpu1 - cpu0) * 1e6 / n, 1)}))
