-- Shared prelude, prepended to every queue script when it is loaded.
--
-- KEYS[1] is always the queue's key prefix, e.g. `spool:{default}`. Every key a
-- script touches starts with it, so all of them hash to the slot of the
-- `{default}` tag and the scripts work unchanged on Redis Cluster.
--
-- Timestamps are microseconds since the Unix epoch, read from Redis' own clock
-- (TIME) so that every worker and every client share one clock.

local P = KEYS[1]

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function job_key(id) return P .. ':job:' .. id end

local PRIORITIES = { high = true, normal = true, low = true }

-- A counter field as a whole number >= 0: missing, garbage, fractions,
-- infinities and NaN all become something HSET/arithmetics cannot choke on.
local function int(value)
  local n = tonumber(value)
  if not n or n ~= n or n == math.huge or n == -math.huge then return 0 end
  n = math.floor(n)
  if n < 0 then return 0 end
  return n
end

-- The fields of a job hash, or nil when the key holds something that is not
-- a hash (a client wrote a string there): the scripts never fail half-way
-- because of one bad key, which would leave the ids they already popped in
-- no list at all.
local function hmget(key, ...)
  local ok = redis.pcall('HMGET', key, ...)
  if type(ok) == 'table' and ok.err then return nil end
  return ok
end

-- Whether `s` is well-formed UTF-8 (ids come from any client; the worker
-- handles them as text).
local function valid_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or (c >= 0xC2 and c < 0xE0) and 2 or (c >= 0xE0 and c < 0xF0) and 3
      or (c >= 0xF0 and c < 0xF5) and 4 or 0
    if len == 0 or i + len - 1 > n then return false end
    for k = i + 1, i + len - 1 do
      local b = s:byte(k)
      if b < 0x80 or b > 0xBF then return false end
    end
    i = i + len
  end
  return true
end

local function ready_key(priority)
  if not PRIORITIES[priority] then priority = 'normal' end
  return P .. ':ready:' .. priority
end

-- Wake one idle worker blocked on the wake list. At most one token waits
-- there: a busy fleet claims in batches and does not need more.
local function wake()
  if redis.call('LLEN', P .. ':wake') == 0 then
    redis.call('RPUSH', P .. ':wake', '1')
  end
end

-- Counters for the stats hash, written once per script call (see count()
-- and flush_counts()) rather than once per job.
local counts = {}
local function count(name) counts[name] = (counts[name] or 0) + 1 end
local function flush_counts()
  for name, n in pairs(counts) do redis.call('HINCRBY', P .. ':stats', name, n) end
end

-- A job reached a terminal state: give its record a TTL and tell a client
-- blocked in `enqueue --wait` (only when it asked, `wait` = 1).
local function finish(id, status, ttl, waiting)
  redis.call('EXPIRE', job_key(id), ttl)
  if waiting == '1' then
    local done = P .. ':done:' .. id
    redis.call('RPUSH', done, status)
    redis.call('EXPIRE', done, 600)
  end
  count(status)
end

-- Put a job in the dead letters, dropping the oldest beyond `cap` (their
-- records go with them: the dead letters are bounded).
local function bury(id, now, ttl, cap, waiting)
  local dead = P .. ':dead'
  redis.call('ZADD', dead, now, id)
  local excess = redis.call('ZCARD', dead) - cap
  if excess > 0 then
    local old = redis.call('ZRANGE', dead, 0, excess - 1)
    redis.call('ZREMRANGEBYRANK', dead, 0, excess - 1)
    for _, o in ipairs(old) do
      -- Only records that are still dead (an id may have been reused); a
      -- key that is not a hash (set aside by a claim) is left alone.
      local status = redis.pcall('HGET', job_key(o), 'status')
      if status == 'dead' then redis.call('DEL', job_key(o)) end
    end
  end
  finish(id, 'dead', ttl, waiting)
end

-- Attempts whose worker lost them (a lease that expired: the worker died;
-- or a job thread the worker's watchdog gave up on: it wedged) after which
-- the job is taken for the cause and dead-lettered as `worker-crash`.
local CRASHES = 3
local LAPSE_FIELDS = { 'attempt', 'max_attempts', 'worker', 'priority', 'wait', 'status',
  'lost_workers', 'lease_expiries' }

-- A running job's attempt ended without an outcome from its handler: the
-- attempt counts, and the job backs off like a retry (base `backoff` µs,
-- doubling per attempt, at most 10 min) so that a job that kills or wedges
-- its workers cannot crash-loop the fleet; the CRASHES-th such ending, or
-- the last attempt, dead-letters it. `f` holds LAPSE_FIELDS of the job;
-- `kind` and `why` describe this ending (`why` gets the worker's id).
local function lapse(id, f, now, backoff, dead_ttl, dead_cap, kind, why)
  local key = job_key(id)
  local attempt, max = int(f[1]), int(f[2] or 5)
  local who = f[3] or '?'
  local lost = (f[7] and f[7] ~= '') and (f[7] .. ', ' .. who) or who
  local expiries = int(f[8]) + 1
  local err
  if expiries >= CRASHES then
    err = cjson.encode({ kind = 'worker-crash', retryable = false, workers = lost,
      message = expiries .. ' attempts ended with their worker gone or wedged (' .. lost
        .. '): the job may crash or wedge workers, so it is not run again' })
  else
    err = cjson.encode({ kind = kind, retryable = attempt < max,
      message = why(who, attempt) })
  end
  redis.call('HSET', key, 'error', err, 'lost_workers', lost, 'lease_expiries', expiries)
  if attempt >= max or expiries >= CRASHES then
    redis.call('HSET', key, 'status', 'dead', 'finished_us', now)
    bury(id, now, dead_ttl, dead_cap, f[5])
  else
    local at = now + math.floor(math.min(backoff * 2 ^ (math.max(attempt, 1) - 1), 600000000))
    redis.call('HSET', key, 'status', 'delayed', 'run_at_us', at)
    redis.call('ZADD', P .. ':delayed', at, id)
  end
end
