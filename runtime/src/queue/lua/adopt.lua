-- Adopt jobs stored under the layout before fair share (every job of a
-- queue under `PREFIX:{QUEUE}`) into their tenant's slot. Idempotent: the
-- hash and its place (list or set) are written together, once; a job whose
-- hash is already here was adopted before (a crash or a second migrator
-- between this and the removal from the old keys) and is left alone.
--
-- KEYS[1]  the tenant's prefix in the queue
-- then one group per job:
--   id, where (ready | delayed | leases | dead), score (µs, for the zsets),
--   ttl (ms, 0: none), nfields, field, value, ... (the old hash, whole)
--
-- Returns {announce_seq, timer_us, ready, adopted}: what the caller announces (see
-- "has work" in lib.lua), and how many jobs were written here.

local adopted = 0
local i = 1
while i <= #ARGV do
  local id, where, score, ttl = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local nfields = tonumber(ARGV[i + 4])
  local key = job_key(id)
  local first = i + 5
  i = i + 5 + nfields * 2
  local seen = redis.call('EXISTS', key) == 1
  if not seen and nfields > 0 then
    redis.call('HSET', key, unpack(ARGV, first, first - 1 + nfields * 2))
    if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
    adopted = adopted + 1
  end
  if seen then
    -- Adopted before: its place was written with its hash.
  elseif where == 'ready' then
    local f = hmget(key, 'priority')
    -- Older than anything queued here: at the consuming end (batches come
    -- newest first, so the oldest job of all ends up there).
    redis.call('RPUSH', ready_key(f and f[1] or 'normal'), id)
    announce_ready()
  elseif where == 'delayed' then
    redis.call('ZADD', P .. ':delayed', score, id)
    ask_timer(score)
  elseif where == 'leases' then
    redis.call('ZADD', P .. ':leases', score, id)
    ask_timer(score)
  else
    redis.call('ZADD', P .. ':dead', score, id)
  end
end
return announced({ adopted })
