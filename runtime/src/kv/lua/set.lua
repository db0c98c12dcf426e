-- Set one key of a tenant's key-value store, within the tenant's quotas,
-- charging it in the tenant's ledger in the same step (the ledger prelude
-- is in front of this script).
--
-- KEYS[1]  the tenant's base:  PREFIX:{kv:TENANT}
-- KEYS[2]  the key:            PREFIX:{kv:TENANT}:KEY
-- ARGV[1]  the value
-- ARGV[2]  time to live, ms (0: none)
-- ARGV[3]  kv-bytes quota (0: none)
-- ARGV[4]  kv-keys quota (0: none)
-- ARGV[5]  kv-writes per second (0: no limit)
--
-- Returns {'ok'}; {'rate', writes this second, limit}; or {'bytes' or
-- 'keys', the usage the write would reach, quota} (nothing written).

local L, now, refused = ledger_begin(KEYS[1], tonumber(ARGV[5]))
if refused then return refused end
local size = ledger_size(KEYS[2], #ARGV[1])
local over = ledger_over(L, KEYS[2], size, tonumber(ARGV[3]), tonumber(ARGV[4]), now)
if over then return over end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
  ledger_put(L, KEYS[2], size, now + ttl)
else
  redis.call('SET', KEYS[2], ARGV[1])
  ledger_put(L, KEYS[2], size, nil)
end
return { 'ok' }
