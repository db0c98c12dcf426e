-- Delete cached results of one tenant and stop charging them to its
-- ledger (the ledger prelude is in front of this script): a purge gives
-- the tenant's cache-bytes quota back at once.
--
-- KEYS[1]     the tenant's ledger base: PREFIX:{cache:TENANT}
-- KEYS[2..]   the entries: PREFIX:{cache:TENANT}:r:…
--
-- Returns how many entries existed.

local L = ledger(KEYS[1])
ledger_guard(L)
local deleted = 0
for i = 2, #KEYS do
  deleted = deleted + redis.call('UNLINK', KEYS[i])
  ledger_forget(L, KEYS[i])
end
return deleted
