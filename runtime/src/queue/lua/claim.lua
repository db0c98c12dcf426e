-- Claim up to N jobs for one worker, after promoting due delayed jobs and
-- requeueing jobs whose lease expired. One round trip does all three, so
-- any worker keeps the queue moving and there is no scheduler process.
--
-- KEYS[1]  queue prefix
-- ARGV[1]  record TTL, seconds (terminal records)
-- ARGV[2]  dead-letter record TTL, seconds
-- ARGV[3]  dead-letter cap
-- ARGV[4]  worker id
-- ARGV[5]  N, the most jobs to claim
-- ARGV[6]  lease, microseconds
--
-- Returns {next_due_us, job, job, ...}: next_due_us is how long until the next
-- delayed job is due (-1 when none); each job is
-- {id, token, attempt, plugin, content_type, payload, max_attempts,
--  enqueued_us, wait, priority}. `false` (nil) marks a missing field.
--
-- Priorities share workers 6:3:1. Claim slot k (a counter kept in the stats
-- hash) prefers high for k mod 10 in 0..5, normal for 6..8 and low for 9,
-- and falls back to the other lists in priority order when the preferred
-- one is empty: low gets at least a tenth of the claims while it has work.

local record_ttl, dead_ttl, dead_cap = ARGV[1], ARGV[2], tonumber(ARGV[3])
local worker, n, lease = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_us()

-- 1. Promote due delayed jobs. ZREM in the same script: each exactly once.
local delayed = P .. ':delayed'
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZREM', delayed, id)
  local key = job_key(id)
  local priority = redis.call('HGET', key, 'priority')
  redis.call('HSET', key, 'status', 'queued')
  -- Due jobs are overdue: they go to the consuming end of their list.
  redis.call('RPUSH', ready_key(priority), id)
end

-- 2. Requeue (or bury) jobs whose worker stopped renewing its lease.
local leases = P .. ':leases'
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(expired) do
  redis.call('ZREM', leases, id)
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'attempt', 'max_attempts', 'worker', 'priority', 'wait')
  local attempt, max = tonumber(f[1]) or 0, tonumber(f[2]) or 5
  local message = 'lease of worker ' .. (f[3] or '?') .. ' expired during attempt '
    .. attempt .. ' (the worker stopped or lost Redis)'
  local err = cjson.encode({ kind = 'lease-expired', message = message, retryable = attempt < max })
  if attempt >= max then
    redis.call('HSET', key, 'status', 'dead', 'error', err, 'finished_us', now)
    bury(id, now, dead_ttl, dead_cap, f[5])
  else
    redis.call('HSET', key, 'status', 'queued', 'error', err)
    redis.call('RPUSH', ready_key(f[4]), id)
  end
end

-- 3. Claim.
local order = {
  { P .. ':ready:high', P .. ':ready:normal', P .. ':ready:low' },
  { P .. ':ready:normal', P .. ':ready:high', P .. ':ready:low' },
  { P .. ':ready:low', P .. ':ready:high', P .. ':ready:normal' },
}
local out = { -1 }
local base = tonumber(redis.call('HGET', P .. ':stats', 'rr') or 0)
local claimed = 0
local lease_until = now + lease
for k = 0, n - 1 do
  local slot = (base + k) % 10
  local lists = order[slot < 6 and 1 or (slot < 9 and 2 or 3)]
  local id = redis.call('RPOP', lists[1]) or redis.call('RPOP', lists[2]) or redis.call('RPOP', lists[3])
  if not id then break end
  claimed = claimed + 1
  local key = job_key(id)
  local token = redis.call('HINCRBY', key, 'token', 1)
  local attempt = redis.call('HINCRBY', key, 'attempt', 1)
  redis.call('HSET', key, 'status', 'running', 'worker', worker, 'started_us', now)
  redis.call('ZADD', leases, lease_until, id)
  local f = redis.call('HMGET', key, 'plugin', 'content_type', 'payload', 'max_attempts',
    'enqueued_us', 'wait', 'priority')
  out[#out + 1] = { id, token, attempt, f[1], f[2], f[3], f[4], f[5], f[6], f[7] }
end
if claimed > 0 then redis.call('HINCRBY', P .. ':stats', 'rr', claimed) end

local next_due = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if next_due[2] then out[1] = math.max(0, tonumber(next_due[2]) - now) end
return out
