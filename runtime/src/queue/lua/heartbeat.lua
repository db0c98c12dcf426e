-- Renew the leases of a worker's running jobs.
--
-- KEYS[1]  the tenant's prefix in the queue
-- ARGV[1]  lease, microseconds
-- then id, token pairs
--
-- A lease is renewed only while the job still runs under that token, so a
-- worker cannot keep alive a job that was already handed to another one.
-- A key that is not a hash counts as lost: it never fails the other
-- renewals. The lease is the attempt's entry `ID TOKEN` in `P:leased`
-- (lib.lua's lease_entry), or the id's in `P:leases` where a worker of the
-- version before leased it (an enqueue of that version handed it over).
-- (A heartbeat comes once a third of a lease per job, so its look at the
-- record costs nothing per job; the ack's fence, which comes once per
-- job, is the entry alone: ack.lua.)
-- Returns one 1 (renewed) or 0 (lost) per pair.

local lease_until = now_us() + tonumber(ARGV[1])
local leased, leases = P .. ':leased', P .. ':leases'
local renewed = {}
for i = 2, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local current = hmget(job_key(id), 'token', 'status')
  if current and current[1] == token and current[2] == 'running' then
    -- (0 also for an entry renewed to the same microsecond: then the
    -- other key's `XX` finds nothing, and the `NX` below nothing to do.)
    -- Leased in neither (a record deleted and written again by hand, a
    -- restore a key of another type refused), the attempt that holds the
    -- job gets its lease back: a job running without one would never be
    -- reaped if its worker died.
    local entry = lease_entry(token, id)
    if redis.call('ZADD', leased, 'XX', 'CH', lease_until, entry) == 0
        and redis.call('ZADD', leases, 'XX', 'CH', lease_until, id) == 0 then
      redis.call('ZADD', leased, 'NX', lease_until, entry)
    end
    renewed[#renewed + 1] = 1
  else
    renewed[#renewed + 1] = 0
  end
end
return renewed
