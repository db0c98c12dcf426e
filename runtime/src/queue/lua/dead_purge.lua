-- Delete dead-lettered jobs and their records.
--
-- KEYS[1]  the tenant's prefix in the queue
-- ARGV     job ids; none means every dead job
--
-- Returns how many left the dead letters. The record goes with its id
-- unless it is a job hash whose status is no longer `dead` (a client
-- reused the id for a new job, which lives on).

local dead = P .. ':dead'
local ids = ARGV
if #ids == 0 then ids = redis.call('ZRANGE', dead, 0, -1) end
local purged = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', dead, id) == 1 then
    local status = redis.pcall('HGET', job_key(id), 'status')
    if type(status) ~= 'string' or status == 'dead' then redis.call('DEL', job_key(id)) end
    purged = purged + 1
  end
end
return purged
