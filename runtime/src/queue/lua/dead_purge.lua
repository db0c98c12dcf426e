-- Delete dead-lettered jobs and their records.
--
-- KEYS[1]  the tenant's prefix in the queue
-- ARGV     job ids; none means every dead job
--
-- Returns how many were deleted.

local dead = P .. ':dead'
local ids = ARGV
if #ids == 0 then ids = redis.call('ZRANGE', dead, 0, -1) end
local purged = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', dead, id) == 1 then
    redis.call('DEL', job_key(id))
    purged = purged + 1
  end
end
return purged
