-- Enqueue one or many jobs (one call per batch saves a script call per job).
--
-- KEYS[1]  queue prefix, e.g. `spool:{default}`
-- ARGV[1]  idempotency key TTL in seconds
-- then one group per job:
--   id, idempotency key ('' for none), delay µs (0 = now, on Redis' clock),
--   priority (high | normal | low), nfields, field, value, ... (nfields pairs
--   of the envelope: plugin, payload, content_type, max_attempts, wait,
--   no_cache)
--
-- Returns id, created, id, created, ...: created is 0 when the idempotency
-- key already named a job, whose id is returned instead.

local now = now_us()
local out = {}
local i = 2
while i <= #ARGV do
  local id, idem, delay, priority = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local nfields = tonumber(ARGV[i + 4])
  local first, last = i + 5, i + 4 + nfields * 2
  i = last + 1
  local existing = false
  if idem ~= '' then
    -- The key names the first job while that job's record lives: for the
    -- record TTL plus the job's delay, and never a job that is gone
    -- (purged, or dropped from the capped dead letters).
    local ikey = P .. ':idem:' .. idem
    existing = redis.call('GET', ikey)
    if existing and redis.call('EXISTS', job_key(existing)) == 0 then existing = false end
    if not existing then
      redis.call('SET', ikey, id, 'EX', tonumber(ARGV[1]) + math.floor(delay / 1000000))
    end
  end
  if existing then
    out[#out + 1] = existing
    out[#out + 1] = 0
  else
    local key = job_key(id)
    local run_at = now + delay
    local fields = { 'enqueued_us', now, 'priority', priority }
    for j = first, last do fields[#fields + 1] = ARGV[j] end
    if run_at > now then
      fields[#fields + 1] = 'status'; fields[#fields + 1] = 'delayed'
      fields[#fields + 1] = 'run_at_us'; fields[#fields + 1] = run_at
      redis.call('HSET', key, unpack(fields))
      redis.call('ZADD', P .. ':delayed', run_at, id)
    else
      fields[#fields + 1] = 'status'; fields[#fields + 1] = 'queued'
      redis.call('HSET', key, unpack(fields))
      -- Only a push into an empty list can find workers idle: they block
      -- only after a claim found every list empty.
      if redis.call('LPUSH', ready_key(priority), id) == 1 then wake() end
    end
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end
return out
