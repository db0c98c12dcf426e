"""Round trip of one job, enqueue to result, through `spool serve`'s HTTP
API against the same job with plain Redis commands (the protocol of
docs/queue.md, as examples/python/enqueue.py speaks it), interleaved in
one run so that both see the same machine. Used by scripts/bench-api.sh.
"""

import argparse
import http.client
import importlib.util
import json
import pathlib
import statistics
import time

import redis

ROOT = pathlib.Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("enqueue", ROOT / "examples/python/enqueue.py")
direct = importlib.util.module_from_spec(spec)
spec.loader.exec_module(direct)


class Args:
    """What enqueue.py's enqueue() reads from its command line."""

    def __init__(self, plugin, payload):
        self.plugin, self.input = plugin, payload
        self.content_type, self.priority, self.max_attempts = "application/json", "normal", 5
        self.wait, self.group, self.delay = True, None, 0


def via_redis(r, plugin, n):
    tenant = plugin.split("/")[0]
    queue_keys, tenant_keys = "spool:{default}", f"spool:{{default/{tenant}}}"
    started = time.perf_counter()
    job_id = direct.enqueue(r, queue_keys, tenant_keys, tenant, Args(plugin, json.dumps({"name": f"r{n}"})))
    record = direct.wait_for(r, tenant_keys, job_id, 30)
    assert record and record[b"status"] == b"succeeded", record
    return time.perf_counter() - started


def via_http(conn, token, plugin, n):
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    started = time.perf_counter()
    body = json.dumps({"plugin": plugin, "payload": {"name": f"h{n}"}, "wait": True})
    conn.request("POST", "/v1/jobs", body, headers)
    reply = conn.getresponse()
    made = json.loads(reply.read())
    assert reply.status == 201, made
    conn.request("GET", f"/v1/jobs/{made['id']}/wait?timeout=30s", headers=headers)
    reply = conn.getresponse()
    record = json.loads(reply.read())
    assert reply.status == 200 and record["status"] == "succeeded", record
    return time.perf_counter() - started


def summary(name, xs):
    xs = sorted(xs)
    p = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))] * 1000
    return {"path": name, "n": len(xs), "p50_ms": round(p(0.5), 3), "p90_ms": round(p(0.9), 3),
            "p99_ms": round(p(0.99), 3), "mean_ms": round(statistics.mean(xs) * 1000, 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--api", required=True, help="HOST:PORT of spool serve")
    ap.add_argument("--token", required=True)
    ap.add_argument("--plugin", default="acme/hello")
    ap.add_argument("--n", type=int, default=500)
    args = ap.parse_args()
    r = redis.Redis(port=args.redis_port)
    conn = http.client.HTTPConnection(args.api, timeout=60)
    plugin_name = args.plugin.split("/", 1)[1]
    for n in range(20):  # warm both paths
        via_redis(r, args.plugin, n)
        via_http(conn, args.token, plugin_name, n)
    rs, hs = [], []
    for n in range(args.n):
        rs.append(via_redis(r, args.plugin, n))
        hs.append(via_http(conn, args.token, plugin_name, n))
    a, b = summary("redis (plain commands)", rs), summary("http (spool serve)", hs)
    print(json.dumps(a))
    print(json.dumps(b))
    print(json.dumps({"http_over_redis_p50": round(b["p50_ms"] / a["p50_ms"], 2),
                      "http_minus_redis_p50_ms": round(b["p50_ms"] - a["p50_ms"], 3)}))


if __name__ == "__main__":
    main()
