-- Renew the leases of a worker's running jobs.
--
-- KEYS[1]  the tenant's prefix in the queue
-- ARGV[1]  lease, microseconds
-- then id, token pairs
--
-- A lease is renewed only while the job still runs under that token, so a
-- worker cannot keep alive a job that was already handed to another one. A
-- key that is not a hash counts as lost: it never fails the other renewals.
-- Returns one 1 (renewed) or 0 (lost) per pair.

local lease_until = now_us() + tonumber(ARGV[1])
local leases = P .. ':leases'
local renewed = {}
for i = 2, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local current = hmget(job_key(id), 'token', 'status')
  if current and current[1] == token and current[2] == 'running' then
    redis.call('ZADD', leases, 'XX', lease_until, id)
    renewed[#renewed + 1] = 1
  else
    renewed[#renewed + 1] = 0
  end
end
return renewed
