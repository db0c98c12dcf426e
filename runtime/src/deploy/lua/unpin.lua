-- Remove a plugin's pin: workers go back to the file in their directory.
--
-- KEYS[1]  PREFIX:{plugins}
-- ARGV[1]  plugin name, tenant/name
--
-- Returns the entry that was pinned, or false when none was.

local name = ARGV[1]
local entry = redis.call('HGET', PINNED, name)
if not entry then return false end
redis.call('HDEL', PINNED, name)
announce_pin(name, '')
return entry
