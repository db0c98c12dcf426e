-- Delete one key of a tenant's key-value store and stop charging it (the
-- ledger prelude is in front of this script). A delete counts as a write
-- for the kv-writes rate.
--
-- KEYS[1]  the tenant's base:  PREFIX:{kv:TENANT}
-- KEYS[2]  the key:            PREFIX:{kv:TENANT}:KEY
-- ARGV[1]  kv-writes per second (0: no limit)
--
-- Returns {'ok', 1 if the key existed else 0} or {'rate', writes, limit}.

local L, _, refused = ledger_begin(KEYS[1], tonumber(ARGV[1]))
if refused then return refused end
local n = redis.call('DEL', KEYS[2])
ledger_forget(L, KEYS[2])
return { 'ok', n }
