-- Store a result and release the single-flight lock if the caller holds it.
--
-- KEYS[1]  the entry (hash: out, job, at)
-- KEYS[2]  the lock
-- ARGV[1]  the output bytes ('' with ARGV[4] = 0: only release the lock)
-- ARGV[2]  the id of the job that computed it
-- ARGV[3]  when (µs since the epoch)
-- ARGV[4]  time to live, ms (0: store nothing)
-- ARGV[5]  the lock owner
--
-- Returns 1.

if tonumber(ARGV[4]) > 0 then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'out', ARGV[1], 'job', ARGV[2], 'at', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
if redis.call('GET', KEYS[2]) == ARGV[5] then redis.call('DEL', KEYS[2]) end
return 1
