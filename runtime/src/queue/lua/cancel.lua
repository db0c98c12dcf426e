-- Cancel a job that has not started: queued, delayed or retrying. It is
-- taken out of its ready list, group or the delayed set, its group slot (if
-- it held one) is freed, and its record ends as `cancelled` (with the
-- record TTL, a completion notice if a client waits, and the tenant's
-- `cancelled` counter). A running or finished job is left as it is.
--
-- KEYS[1]  the tenant's prefix in the queue
-- ARGV[1]  job id
-- ARGV[2]  record TTL, seconds
--
-- Returns {announce_seq, timer_us, ready, outcome} (see "has work" in
-- lib.lua: a freed group slot may give the tenant work): outcome `ok`
-- (cancelled now), `missing` (no such job), or the status that cannot be
-- cancelled (`running`, `succeeded`, `dead`, `cancelled`).

local id, ttl = ARGV[1], ARGV[2]
local key = job_key(id)
local f = hmget(key, 'status', 'priority', 'group', 'group_held', 'wait')
if not f or redis.call('EXISTS', key) == 0 then return announced({ 'missing' }) end
local status, g, held = f[1], f[3], f[4] == '1'
local removed = 0
local function from_ready()
  if g and g ~= '' and not held then
    removed = redis.call('LREM', group_key(g), 1, id)
    if redis.call('LLEN', group_key(g)) == 0 then
      redis.call('ZREM', P .. ':groups', g)
      redis.call('ZREM', P .. ':gall', g)
    end
  else
    removed = redis.call('LREM', ready_key(f[2]), 1, id)
  end
end
if status == 'queued' then
  from_ready()
elseif status == 'delayed' or status == 'retrying' then
  removed = redis.call('ZREM', P .. ':delayed', id)
elseif not status then
  -- A minimal plain-command envelope: waiting in one or the other.
  removed = redis.call('ZREM', P .. ':delayed', id)
  if removed == 0 then from_ready() end
else
  return announced({ status })
end
-- Not where its status says (a record written by hand): nothing to stop.
if removed == 0 then return announced({ 'missing' }) end
if held then release_group(id, g) end
redis.call('HSET', key, 'status', 'cancelled', 'finished_us', now_us())
finish(id, 'cancelled', ttl, f[5])
flush_counts()
return announced({ 'ok' })
