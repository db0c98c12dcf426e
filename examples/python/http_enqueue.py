"""Enqueue a Spool job through the HTTP API, and wait for its result.

Uses nothing but Python's standard library and a tenant token: no Redis
credentials, no client library. See docs/api.md.

    spool tokens create --tenant acme --scopes submit,read > token.txt
    spool serve --listen 127.0.0.1:8080 &
    SPOOL_TOKEN=$(cat token.txt) python3 examples/python/http_enqueue.py \\
        --api http://127.0.0.1:8080 hello '{"name":"Py"}' --wait

Without `--wait` it prints the new job's id. With `--wait` it prints the
job's output and exits 0, or the error of a dead job and exits 1. Exit 75
means "try again later" (the server or its Redis was unavailable, or the
job had not finished within `--timeout`); exit 2 a usage error or a
request the API refused (its message is printed).
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

RETRY_LATER = 75


def call(api, token, method, path, body=None, timeout=70):
    """(status, JSON reply) of one request; API errors are replies too."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(api.rstrip("/") + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def refused(status, reply):
    """Print the API's error; the exit code it calls for."""
    error = reply.get("error", {})
    field = f" (field {error['field']})" if error.get("field") else ""
    print(f"spool api: {status} {error.get('kind')}: {error.get('message')}{field}", file=sys.stderr)
    return RETRY_LATER if error.get("retryable") else 2


def wait(api, token, job_id, timeout):
    """The job's record once it ended, or None when `timeout` passed."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        status, record = call(api, token, "GET", f"/v1/jobs/{job_id}/wait?timeout={min(60, max(1, int(left)))}s")
        if status == 200:
            return record
        if status != 202:
            raise RuntimeError((status, record))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plugin", help="NAME (the token's tenant's) or TENANT/NAME")
    ap.add_argument("payload", help="the job's input, as JSON")
    ap.add_argument("--api", default=os.environ.get("SPOOL_API", "http://127.0.0.1:8080"))
    ap.add_argument("--token", default=os.environ.get("SPOOL_TOKEN"), help="default: $SPOOL_TOKEN")
    ap.add_argument("--priority", choices=["high", "normal", "low"])
    ap.add_argument("--wait", action="store_true", help="wait for the result and print it")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    args = ap.parse_args()
    if not args.token:
        ap.error("no token: pass --token or set SPOOL_TOKEN (spool tokens create …)")
    try:
        payload = json.loads(args.payload)
    except ValueError as e:
        ap.error(f"payload is not JSON: {e}")
    job = {"plugin": args.plugin, "payload": payload, "wait": args.wait}
    if args.priority:
        job["priority"] = args.priority
    try:
        status, reply = call(args.api, args.token, "POST", "/v1/jobs", job)
        if status not in (200, 201):
            return refused(status, reply)
        if not args.wait:
            print(reply["id"])
            return 0
        record = wait(args.api, args.token, reply["id"], args.timeout)
    except RuntimeError as e:
        return refused(*e.args[0])
    except (OSError, urllib.error.URLError) as e:
        print(f"spool api at {args.api} is unreachable ({e}); try again later", file=sys.stderr)
        return RETRY_LATER
    if record is None:
        print(f"job {reply['id']} did not finish within {args.timeout:g}s; it stays on the queue", file=sys.stderr)
        return RETRY_LATER
    if record["status"] == "succeeded":
        print(record.get("output", ""))
        return 0
    print(f"job {record['id']} is dead: {json.dumps(record.get('error'))}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
