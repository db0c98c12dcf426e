-- Record running jobs' latest progress as their guests report it, so that
-- a record read (or an API progress stream) shows it while the job runs.
--
-- KEYS[1]  the tenant's prefix in the queue
-- then id, token, progress (JSON) triples
--
-- Written only while the job still runs under that token: a report of an
-- attempt that lost its lease, or one that arrives after the ack (which
-- writes the last progress itself), changes nothing, and a record that
-- expired is not brought back.
-- Returns the number of records written.

local written = 0
for i = 1, #ARGV, 3 do
  local id, token, progress = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = job_key(id)
  local current = hmget(key, 'token', 'status')
  if current and current[1] == token and current[2] == 'running' then
    redis.call('HSET', key, 'progress', progress)
    written = written + 1
  end
end
return written
