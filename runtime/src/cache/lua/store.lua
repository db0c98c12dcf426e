-- Store a result and release the single-flight lock if the caller holds it.
-- The entry is charged to the tenant's cache ledger (the ledger prelude is
-- in front of this script); a result that would put the tenant over its
-- cache-bytes quota is not stored (the job's result is unaffected: it is
-- only not cached).
--
-- KEYS[1]  the entry (hash: out, job, at)
-- KEYS[2]  the lock
-- KEYS[3]  the tenant's ledger base: PREFIX:{cache:TENANT}
-- ARGV[1]  the output bytes ('' with ARGV[4] = 0: only release the lock)
-- ARGV[2]  the id of the job that computed it
-- ARGV[3]  when (µs since the epoch)
-- ARGV[4]  time to live, ms (0: store nothing)
-- ARGV[5]  the lock owner
-- ARGV[6]  the tenant's cache-bytes quota (0: none)
--
-- Returns 1 (stored, or nothing to store) or 0 (over the quota: not stored).

local stored = 1
if tonumber(ARGV[4]) > 0 then
  local L = ledger(KEYS[3])
  ledger_guard(L)
  local now = ledger_now_ms()
  ledger_sweep(L, now, 64)
  local size = ledger_size(KEYS[1], #ARGV[1] + #ARGV[2] + #ARGV[3])
  if ledger_over(L, KEYS[1], size, tonumber(ARGV[6]), 0, now) then
    stored = 0
  else
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[1], 'out', ARGV[1], 'job', ARGV[2], 'at', ARGV[3])
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
    ledger_put(L, KEYS[1], size, now + tonumber(ARGV[4]))
  end
end
if redis.call('GET', KEYS[2]) == ARGV[5] then redis.call('DEL', KEYS[2]) end
return stored
