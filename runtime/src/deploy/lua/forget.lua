-- Forget a plugin: its history and the bytes of every version in it. A
-- pinned plugin is not forgotten (unpin it first).
--
-- KEYS[1]  PREFIX:{plugins}
-- ARGV[1]  plugin name, tenant/name
--
-- Returns the number of versions whose bytes were deleted, or 'pinned'.

local name = ARGV[1]
if redis.call('HEXISTS', PINNED, name) == 1 then return 'pinned' end
local history = history_key(name)
local deleted = 0
local seen = {}
for _, e in ipairs(redis.call('LRANGE', history, 0, -1)) do
  local digest = decode(e).digest
  if digest and not seen[digest] then
    seen[digest] = true
    deleted = deleted + redis.call('DEL', blob_key(name, digest))
  end
end
redis.call('DEL', history)
redis.call('SREM', P .. ':names', name)
return deleted
