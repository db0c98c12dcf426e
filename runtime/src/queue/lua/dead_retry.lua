-- Move dead-lettered jobs back to their ready list with fresh attempts.
--
-- KEYS[1]  the tenant's prefix in the queue
-- ARGV     job ids; none means every dead job
--
-- Returns {announce_seq, timer_us, ready, id, ...}: the ids that were moved, after
-- what the caller announces (see "has work" in lib.lua). Ids not in the dead letters are skipped;
-- so are ids whose key is gone or is not a hash (nothing could run), and ids
-- that are not UTF-8 (no worker could run them): they stay in the dead
-- letters, to be purged. An id whose record is no longer `dead` (a client
-- reused the id for a new job) only leaves the dead letters: retrying it
-- would push a second copy of a live job.
--
-- A retried job gets a new token (its old one plus one): the worker whose
-- expired lease put it here may still send an outcome under the old one,
-- and that outcome must not undo the retry (see "Fencing" in ack.lua).

local dead = P .. ':dead'
local ids = ARGV
if #ids == 0 then ids = redis.call('ZRANGE', dead, 0, -1) end
local moved = {}
for _, id in ipairs(ids) do
  local key = job_key(id)
  local f = hmget(key, 'priority', 'group', 'status', 'token')
  if f and f[3] and f[3] ~= 'dead' then
    redis.call('ZREM', dead, id)
  elseif f and valid_utf8(id) and redis.call('EXISTS', key) == 1 and redis.call('ZREM', dead, id) == 1 then
    redis.call('PERSIST', key)
    redis.call('HDEL', key, 'waiting_since_us', 'lost_workers', 'lease_expiries', 'group_held')
    redis.call('HSET', key, 'status', 'queued', 'attempt', 0, 'retried_from_dead_us', now_us())
    if f[4] then redis.call('HSET', key, 'token', text(int(f[4]) + 1)) end
    -- Back to the head of its group, or the far end of its ready list.
    if f[2] then
      make_ready(id, f[1], f[2], false)
    else
      redis.call('LPUSH', ready_key(f[1]), id)
      announce_ready()
    end
    moved[#moved + 1] = id
  end
end
return announced(moved)
