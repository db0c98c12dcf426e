-- Record the outcomes of finished attempts, many jobs per call.
--
-- KEYS[1]  queue prefix
-- ARGV[1]  record TTL, seconds
-- ARGV[2]  dead-letter record TTL, seconds
-- ARGV[3]  dead-letter cap
-- then one group per job:
--   id, token, outcome, run_at_us, wait, nfields, field, value, ... (nfields pairs)
-- outcome: succeeded | retrying | dead | requeue
--   retrying: back to the delayed set until run_at_us (backoff)
--   requeue:  handed back without spending an attempt (shutdown, or the plugin
--             is not loaded here); delayed until run_at_us when it is in the future
--
-- Fencing: an outcome is applied only if the job is still `running` under the
-- same token. A worker whose lease expired (the job was requeued or claimed
-- again) gets 0 for that job and changes nothing.
--
-- Returns one 1 (applied) or 0 (stale) per group, in order.

local record_ttl, dead_ttl, dead_cap = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_us()
local leases = P .. ':leases'
local applied = {}
local released = {}
local i = 4
while i <= #ARGV do
  local id, token, outcome, run_at, waiting = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), ARGV[i + 4]
  local nfields = tonumber(ARGV[i + 5])
  local key = job_key(id)
  local current = redis.call('HMGET', key, 'token', 'status')
  if current[1] == token and current[2] == 'running' then
    released[#released + 1] = id
    if #released >= 1000 then
      redis.call('ZREM', leases, unpack(released))
      released = {}
    end
    local fields = { 'status', outcome, 'finished_us', now }
    for j = i + 6, i + 5 + nfields * 2 do fields[#fields + 1] = ARGV[j] end
    if run_at > now then
      fields[#fields + 1] = 'run_at_us'; fields[#fields + 1] = run_at
    end
    if outcome == 'requeue' then
      fields[2] = run_at > now and 'delayed' or 'queued'
      fields[3] = 'requeued_us'
      redis.call('HINCRBY', key, 'attempt', -1)
    end
    redis.call('HSET', key, unpack(fields))
    if outcome == 'succeeded' then
      finish(id, 'succeeded', record_ttl, waiting)
    elseif outcome == 'dead' then
      bury(id, now, dead_ttl, dead_cap, waiting)
    elseif outcome == 'retrying' then
      redis.call('ZADD', P .. ':delayed', run_at, id)
      count('retried')
    elseif run_at > now then
      redis.call('ZADD', P .. ':delayed', run_at, id)
    else
      local priority = redis.call('HGET', key, 'priority')
      redis.call('RPUSH', ready_key(priority), id)
      wake()
    end
    applied[#applied + 1] = 1
  else
    applied[#applied + 1] = 0
  end
  i = i + 6 + nfields * 2
end
if #released > 0 then redis.call('ZREM', leases, unpack(released)) end
flush_counts()
return applied
