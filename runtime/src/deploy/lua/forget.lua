-- Forget a plugin: its history (and the bytes of its versions kept the old
-- way); the caller deletes the bytes of the digests it returns. A pinned
-- plugin is not forgotten (unpin it first).
--
-- KEYS[1]  PREFIX:{plugins}
-- ARGV[1]  plugin name, tenant/name
--
-- Returns {'forgot', N, DIGEST…}: N legacy blobs deleted here, and every
-- digest the history named; or {'pinned'}.

local name = ARGV[1]
if redis.call('HEXISTS', PINNED, name) == 1 then return {'pinned'} end
local history = history_key(name)
local deleted = 0
local seen = {}
local digests = {}
for _, e in ipairs(redis.call('LRANGE', history, 0, -1)) do
  local digest = decode(e).digest
  if digest and not seen[digest] then
    seen[digest] = true
    deleted = deleted + redis.call('DEL', legacy_blob_key(name, digest))
    digests[#digests + 1] = digest
  end
end
redis.call('DEL', history)
redis.call('SREM', P .. ':names', name)
return {'forgot', deleted, unpack(digests)}
