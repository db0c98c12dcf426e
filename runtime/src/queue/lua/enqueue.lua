-- Enqueue one job.
--
-- KEYS[1]  queue prefix, e.g. `spool:{default}`
-- ARGV[1]  job id (a ULID)
-- ARGV[2]  idempotency key, or '' for none
-- ARGV[3]  idempotency key TTL in seconds
-- ARGV[4]  delay in microseconds, from now by Redis' clock; 0 = now
-- ARGV[5]  priority: high | normal | low
-- ARGV[6..] field, value, ... of the envelope (plugin, payload, content_type, ...)
--
-- Returns {id, created}: created is 0 when the idempotency key already named a
-- job, whose id is returned instead.

local id = ARGV[1]
if ARGV[2] ~= '' then
  local ikey = P .. ':idem:' .. ARGV[2]
  local existing = redis.call('GET', ikey)
  if existing then return { existing, 0 } end
  redis.call('SET', ikey, id, 'EX', ARGV[3])
end

local now = now_us()
local run_at = now + tonumber(ARGV[4])
local key = job_key(id)
local fields = { 'enqueued_us', now, 'priority', ARGV[5] }
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
if run_at > now then
  fields[#fields + 1] = 'status'; fields[#fields + 1] = 'delayed'
  fields[#fields + 1] = 'run_at_us'; fields[#fields + 1] = run_at
  redis.call('HSET', key, unpack(fields))
  redis.call('ZADD', P .. ':delayed', run_at, id)
else
  fields[#fields + 1] = 'status'; fields[#fields + 1] = 'queued'
  redis.call('HSET', key, unpack(fields))
  -- Only a push into an empty list can find workers idle: they block only
  -- after a claim found every list empty.
  if redis.call('LPUSH', ready_key(ARGV[5]), id) == 1 then wake() end
end
return { id, 1 }
