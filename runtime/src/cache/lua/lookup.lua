-- Look up a cached result; on a miss, optionally take the single-flight
-- lock so that other workers wait for this one's result.
--
-- KEYS[1]  the entry:  PREFIX:{cache:TENANT}:r:PLUGIN:VERSION:HASH (hash)
-- KEYS[2]  the lock:   PREFIX:{cache:TENANT}:l:PLUGIN:VERSION:HASH (string)
-- ARGV[1]  the lock owner (worker id and a random part)
-- ARGV[2]  how long the lock lives, ms (the job's timeout and a margin)
--
-- Returns {'hit', output, job id, ms left to live}, {'claimed'} (the caller
-- computes and stores) or {'busy'} (another worker computes).

local ok, v = pcall(redis.call, 'HMGET', KEYS[1], 'out', 'job')
if ok and v[1] then
  return { 'hit', v[1], v[2] or '', redis.call('PTTL', KEYS[1]) }
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return { 'claimed' } end
if redis.call('GET', KEYS[2]) == ARGV[1] then return { 'claimed' } end
return { 'busy' }
