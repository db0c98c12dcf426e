-- Remove a plugin's pin: workers go back to the file in their directory.
--
-- KEYS[1]  PREFIX:{plugins}
-- ARGV[1]  plugin name, tenant/name
--
-- Returns the entry that was pinned, or false when none was.

local P = KEYS[1]
local name = ARGV[1]
local entry = redis.call('HGET', P .. ':pinned', name)
if not entry then return false end
redis.call('HDEL', P .. ':pinned', name)
redis.call('XADD', P .. ':events', 'MAXLEN', '~', 1000, '*', 'name', name, 'digest', '')
return entry
