"""Enqueue a Spool job from Python with plain Redis commands.

This script implements the queue protocol of `docs/queue.md` with nothing but
`redis-py` and ordinary Redis commands: no Lua, no Spool code. It shows that
any language with a Redis client can put jobs on a Spool queue and wait for
their results.

Run with a worker serving the same Redis:

    pip install redis
    spool worker --redis redis://127.0.0.1:6379 --plugins target/plugins &
    python3 examples/python/enqueue.py hello '{"name":"Py"}' --wait

Without `--wait` it prints the new job's id (see it with `spool job ID`).
With `--wait` it prints the job's output and exits 0, or prints the error of a
dead job and exits 1. Exit 75 means "try again later": Redis was unreachable,
or the job had not finished within `--timeout`. Exit 2 is a usage error.
"""

import argparse
import json
import os
import re
import sys
import time

try:
    import redis
except ImportError:
    sys.exit("enqueue.py needs redis-py: pip install redis")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_RETRYABLE = 0, 1, 2, 75

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
NAME_PART = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")


def ulid():
    """A ULID: 48-bit milliseconds since the epoch, then 80 random bits, as
    26 characters of Crockford base32 (sortable by creation time)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def plugin_name(text):
    """`name` or `tenant/name`, as the worker accepts it; stored as
    `tenant/name` (tenant `default` when none is given)."""
    tenant, name = text.split("/", 1) if "/" in text else ("default", text)
    if not (NAME_PART.fullmatch(tenant) and NAME_PART.fullmatch(name)):
        raise argparse.ArgumentTypeError(
            f"invalid plugin name {text!r}: expected NAME or TENANT/NAME, each 1-64 "
            "characters of letters, digits, '_', '-' and '.' (not leading '.')"
        )
    return f"{tenant}/{name}"


def positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


GROUP = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")


def group_name(text):
    if not GROUP.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"invalid group name {text!r}: expected 1-128 letters, digits, '_', '-', '.', ':' or '@'")
    return text


def seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def parse_args():
    p = argparse.ArgumentParser(
        description="Put a job on a Spool queue (docs/queue.md) and optionally wait for it.",
    )
    p.add_argument("--redis", default=os.environ.get("SPOOL_REDIS", "redis://127.0.0.1:6379"),
                   help="Redis URL [default: $SPOOL_REDIS, else redis://127.0.0.1:6379]")
    p.add_argument("--prefix", default=os.environ.get("SPOOL_PREFIX", "spool"),
                   help="first part of every key [default: $SPOOL_PREFIX, else spool]")
    p.add_argument("--queue", default=os.environ.get("SPOOL_QUEUE", "default"),
                   help="queue name, the {hash tag} of every key (spool worker --queue)")
    p.add_argument("plugin", type=plugin_name, help="NAME or TENANT/NAME")
    p.add_argument("input", help="the job's input, stored as-is (e.g. inline JSON)")
    p.add_argument("--content-type", default="application/json",
                   help="MIME type of the input [default: application/json]")
    p.add_argument("--priority", choices=["high", "normal", "low"], default="normal",
                   help="how the job shares workers: 6:3:1 [default: normal]")
    p.add_argument("--max-attempts", type=positive_int, default=5,
                   help="attempts before the job is dead-lettered [default: 5]")
    p.add_argument("--delay", type=seconds, default=0.0,
                   help="run no earlier than this many seconds from now")
    p.add_argument("--group", type=group_name,
                   help="run one at a time, in order, with the tenant's other jobs of this group")
    p.add_argument("--wait", action="store_true",
                   help="wait for the job to finish; print its output (or error)")
    p.add_argument("--timeout", type=seconds,
                   help="with --wait: give up after this many seconds [default: 300]")
    args = p.parse_args()
    if args.timeout is not None and not args.wait:
        p.error("--timeout only applies with --wait")
    if args.timeout is None:
        args.timeout = 300.0
    return args


def redis_now_us(r):
    """Redis' clock, in microseconds: the one the workers use."""
    secs, micros = r.time()
    return secs * 1_000_000 + micros


def enqueue(r, queue_keys, tenant_keys, tenant, args):
    """Two transactions (docs/queue.md, "Enqueue with plain commands"): the
    job in its tenant's slot (hash, ready list or group or delayed set, the
    "has work" mark and a sequence number), then the tenant announced in the
    queue's slot (ready set or a timer, and a wake token). Returns the id."""
    job_id = ulid()
    now = redis_now_us(r)
    fields = {
        "plugin": args.plugin,
        "payload": os.fsencode(args.input),  # the raw bytes of the argument
        "content_type": args.content_type,
        "priority": args.priority,
        "max_attempts": args.max_attempts,
        "attempt": 0,
        "wait": 1 if args.wait else 0,
        "enqueued_us": now,
    }
    if args.group:
        fields["group"] = args.group
    # The tenant named in the queue's slot first (once is enough; repeating
    # it changes nothing): if this process stops between the transactions
    # below, a worker's sweep still finds the job.
    r.zadd(f"{queue_keys}:seq", {tenant: 0}, nx=True)
    tx = r.pipeline(transaction=True)
    run_at = now + int(args.delay * 1_000_000) if args.delay > 0 else None
    if run_at:
        fields.update(status="delayed", run_at_us=run_at)
        tx.hset(f"{tenant_keys}:job:{job_id}", mapping=fields)
        tx.zadd(f"{tenant_keys}:delayed", {job_id: run_at})
    else:
        fields["status"] = "queued"
        tx.hset(f"{tenant_keys}:job:{job_id}", mapping=fields)
        if args.group:
            tx.rpush(f"{tenant_keys}:group:{args.group}", job_id)
            tx.zadd(f"{tenant_keys}:groups", {args.group: 0})
            tx.zadd(f"{tenant_keys}:gall", {args.group: 0})
        else:
            tx.lpush(f"{tenant_keys}:ready:{args.priority}", job_id)
    tx.hincrby(f"{tenant_keys}:stats", "seq", 1)
    seq = tx.execute()[-1]

    tx = r.pipeline(transaction=True)
    # The sequence number only goes up: a worker that found the tenant empty
    # just before our push then leaves it in the set of tenants with work.
    tx.zadd(f"{queue_keys}:seq", {tenant: seq}, gt=True)
    if run_at:
        tx.zadd(f"{queue_keys}:timers", {tenant: run_at}, lt=True)
    else:
        tx.zadd(f"{queue_keys}:ready", {tenant: 0})
    # Wake one idle worker; the list keeps at most one token (a spare token
    # costs one idle worker one empty claim).
    tx.rpush(f"{queue_keys}:wake", 1)
    tx.ltrim(f"{queue_keys}:wake", 0, 0)
    tx.execute()
    return job_id


def error_message(record):
    """The `message` of the record's `error` JSON, if any."""
    try:
        return json.loads(record.get(b"error") or b"{}").get("message")
    except (ValueError, AttributeError):
        return None


def wait_for(r, keys, job_id, timeout):
    """Block until the job succeeds or dies; return its record (a dict of
    bytes), or None on timeout."""
    record_key, done_key = f"{keys}:job:{job_id}", f"{keys}:done:{job_id}"
    deadline = time.monotonic() + timeout
    while True:
        # Check the record first: the job may already be done (and its
        # notice may have expired, or been taken by another waiter).
        record = r.hgetall(record_key)
        if record.get(b"status") in (b"succeeded", b"dead"):
            return record
        left = deadline - time.monotonic()
        if left <= 0:
            status = record.get(b"status", b"unknown (no record)").decode()
            message = error_message(record)
            last = f" (last error: {message})" if message else ""
            print(f"job {job_id} did not finish within {timeout:g}s; it is still {status}{last}; "
                  "it stays on the queue", file=sys.stderr)
            return None
        r.blpop([done_key], timeout=min(left, 1.0))


def main():
    args = parse_args()
    tenant = args.plugin.split("/", 1)[0]
    queue_keys = f"{args.prefix}:{{{args.queue}}}"
    keys = f"{args.prefix}:{{{args.queue}/{tenant}}}"
    try:
        r = redis.Redis.from_url(args.redis, socket_connect_timeout=2)
    except ValueError as e:
        print(f"invalid redis url {args.redis!r}: {e}; expected redis://HOST[:PORT][/DB]",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        job_id = enqueue(r, queue_keys, keys, tenant, args)
        if not args.wait:
            print(job_id)
            return EXIT_OK
        record = wait_for(r, keys, job_id, args.timeout)
    except (redis.ConnectionError, redis.TimeoutError) as e:
        print(f"redis at {args.redis} is unavailable ({e}); retrying later can help",
              file=sys.stderr)
        return EXIT_RETRYABLE
    except redis.RedisError as e:
        print(f"redis at {args.redis} refused the command: {e}", file=sys.stderr)
        return EXIT_FAILED
    if record is None:
        return EXIT_RETRYABLE
    if record[b"status"] == b"succeeded":
        output = record.get(b"output", b"")
        sys.stdout.buffer.write(output)
        if sys.stdout.isatty() and not output.endswith(b"\n"):
            sys.stdout.buffer.write(b"\n")
        sys.stdout.flush()
        return EXIT_OK
    print(f"job {job_id} is dead: {error_message(record) or 'no error recorded'}",
          file=sys.stderr)
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
