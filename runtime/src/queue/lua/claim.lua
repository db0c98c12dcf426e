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
-- ARGV[7]  backoff, microseconds: a job whose lease expired waits
--          backoff · 2^(attempt-1) (at most 10 min) before it runs again
--
-- Returns {next_due_us, now_us, FIELDS, job, job, ...}: next_due_us is how
-- long until the next delayed job is due (-1 when none), now_us is Redis'
-- clock, FIELDS names the envelope fields each job carries after its first
-- three; each job is {id, token, attempt, <one value per name in FIELDS>}.
-- `false` (nil) marks a missing field. The worker decodes jobs by these
-- names, so a field added here cannot shift another.
--
-- Priorities share workers 6:3:1. The N claim slots of a call continue a
-- counter kept in the stats hash (`rr`): slot k prefers high for k mod 10 in
-- 0..5, normal for 6..8 and low for 9. Each list is popped once for its
-- share (RPOP with a count, Redis >= 6.2), and what a list could not supply
-- is taken from the others in priority order: low gets at least a tenth of
-- the claims while it has work.

local record_ttl, dead_ttl, dead_cap = ARGV[1], ARGV[2], tonumber(ARGV[3])
local worker, n, lease = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local backoff = tonumber(ARGV[7] or 1000000)
local now = now_us()
-- 1. Promote due delayed jobs. ZREM in the same script: each exactly once.
-- Ids without a job hash are dropped (nothing to run); a key that is not a
-- hash is parked in the dead letters, as the claim below does. A hash
-- without `status` (a minimal plain-command envelope) is promoted.
local delayed = P .. ':delayed'
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZREM', delayed, id)
  local key = job_key(id)
  local f = hmget(key, 'priority', 'status')
  if not f then
    redis.call('ZADD', P .. ':dead', now, id)
  elseif redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'status', 'queued')
    -- Due jobs are overdue: they go to the consuming end of their list.
    redis.call('RPUSH', ready_key(f[1]), id)
  end
end

-- 2. Back off (or bury) jobs whose worker stopped renewing its lease: the
-- attempt counts, and the job waits like a retry, so that a job that kills
-- its workers cannot crash-loop the fleet; after CRASHES such endings it is
-- dead-lettered as `worker-crash`, naming the workers.
local leases = P .. ':leases'
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(expired) do
  redis.call('ZREM', leases, id)
  local key = job_key(id)
  local f = hmget(key, unpack(LAPSE_FIELDS))
  if f and f[6] == 'running' then
    lapse(id, f, now, backoff, dead_ttl, dead_cap, 'lease-expired', function(who, attempt)
      return 'lease of worker ' .. who .. ' expired during attempt ' .. attempt
        .. ' (the worker stopped or lost Redis)'
    end)
  end
end

-- 3. Claim. Each of the N claim slots prefers one list (6:3:1 by the
-- rotating slot counter); each list is popped once for its share, and what
-- a list could not supply is filled from the others in priority order.
local names = { 'high', 'normal', 'low' }
local base = tonumber(redis.call('HGET', P .. ':stats', 'rr') or 0)
local share = { 0, 0, 0 }
for k = 0, n - 1 do
  local slot = (base + k) % 10
  local band = slot < 6 and 1 or (slot < 9 and 2 or 3)
  share[band] = share[band] + 1
end
local ids = {}
local short = 0
for band = 1, 3 do
  if share[band] > 0 then
    local got = redis.call('RPOP', P .. ':ready:' .. names[band], share[band]) or {}
    for _, id in ipairs(got) do ids[#ids + 1] = id end
    short = short + share[band] - #got
  end
end
for band = 1, 3 do
  if short <= 0 then break end
  local got = redis.call('RPOP', P .. ':ready:' .. names[band], short) or {}
  for _, id in ipairs(got) do ids[#ids + 1] = id end
  short = short - #got
end

-- The envelope fields a claimed job carries, by name (see the header).
local FIELDS = { 'plugin', 'content_type', 'payload', 'max_attempts', 'enqueued_us',
  'wait', 'priority', 'waiting_since_us', 'no_cache' }
local out = { -1, now, FIELDS }
local lease_until = now + lease
local lease_args = {}
local skipped = 0
for _, id in ipairs(ids) do
  local key = job_key(id)
  -- f[1..3]: what the claim itself needs; f[4..]: FIELDS, for the reply.
  local f = hmget(key, 'attempt', 'token', 'status', unpack(FIELDS))
  if not f then
    -- Not a hash: nothing can be recorded there. Park the id in the dead
    -- letters (without a record) so that it is visible, and go on.
    redis.call('ZADD', P .. ':dead', now, id)
  elseif not valid_utf8(id) then
    -- The worker could not name it back (ids are text on its side): it is
    -- dead-lettered here, never run.
    redis.call('HSET', key, 'status', 'dead', 'finished_us', now, 'error', cjson.encode({
      kind = 'malformed-envelope', retryable = false,
      message = 'the job id is not UTF-8 text; expected an id such as a ULID' }))
    bury(id, now, dead_ttl, dead_cap, f[3 + 6])
  elseif f[3] == 'running' or f[3] == 'succeeded' or f[3] == 'dead' then
    -- A duplicate of an id that is already claimed or finished (a client
    -- pushed it twice): running it again would be a second attempt at once.
    skipped = skipped + 1
  else
    -- A missing hash (an id pushed without a record) is claimed like any
    -- other: the worker dead-letters it as a malformed envelope.
    local attempt = int(f[1]) + 1
    -- The token grows by at least one per claim and is never below the
    -- claim's time (µs): after Redis restarts from an older AOF, or an
    -- async replica takes over, a job's counter may go back, but a new
    -- claim's token is still above every token handed out before (as long
    -- as Redis' clock does not go back), so a worker holding an old one
    -- can never ack the new attempt.
    local token = math.max(int(f[2]) + 1, now)
    redis.call('HSET', key, 'token', token, 'attempt', attempt, 'status', 'running',
      'worker', worker, 'claimed_us', now)
    lease_args[#lease_args + 1] = lease_until
    lease_args[#lease_args + 1] = id
    if #lease_args >= 1000 then
      redis.call('ZADD', leases, unpack(lease_args))
      lease_args = {}
    end
    out[#out + 1] = { id, token, attempt, unpack(f, 4, 3 + #FIELDS) }
  end
end
if #lease_args > 0 then redis.call('ZADD', leases, unpack(lease_args)) end
if #ids > 0 then redis.call('HINCRBY', P .. ':stats', 'rr', #ids) end
-- A full claim may have left work behind: wake another idle worker for it.
if #ids == n and short <= 0 then
  if redis.call('LLEN', P .. ':ready:high') + redis.call('LLEN', P .. ':ready:normal')
      + redis.call('LLEN', P .. ':ready:low') > 0 then
    wake()
  end
end
flush_counts()

local next_due = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if next_due[2] then out[1] = math.max(0, tonumber(next_due[2]) - now) end
return out
