-- Forget a plugin: its history and the bytes of every version in it. A
-- pinned plugin is not forgotten (unpin it first).
--
-- KEYS[1]  PREFIX:{plugins}
-- ARGV[1]  plugin name, tenant/name
--
-- Returns the number of versions whose bytes were deleted, or 'pinned'.

local P = KEYS[1]
local name = ARGV[1]
if redis.call('HEXISTS', P .. ':pinned', name) == 1 then return 'pinned' end
local history = P .. ':history:' .. name
local deleted = 0
local seen = {}
for _, e in ipairs(redis.call('LRANGE', history, 0, -1)) do
  local ok, v = pcall(cjson.decode, e)
  if ok and type(v) == 'table' and v.digest and not seen[v.digest] then
    seen[v.digest] = true
    deleted = deleted + redis.call('DEL', P .. ':blob:' .. name .. ':' .. v.digest)
  end
end
redis.call('DEL', history)
redis.call('SREM', P .. ':names', name)
return deleted
