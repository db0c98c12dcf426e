-- Record a plugin version: push it on the plugin's history, and for a
-- deploy or a rollback pin it, telling every worker through the events
-- stream. Its bytes are the caller's to store first, under
-- `PREFIX:blob:{DIGEST}:NAME` (a slot per digest, so that plugin bytes
-- spread over a cluster): a script cannot reach that slot.
--
-- KEYS[1]  PREFIX:{plugins}; every key below starts with it (one slot).
-- ARGV[1]  plugin name, tenant/name
-- ARGV[2]  version digest
-- ARGV[3]  the version entry, JSON (with "digest" and "manifest" fields)
-- ARGV[4]  '1' to pin it (deploy, rollback), '0' to only record it
--          (a worker loaded it from its directory)
-- ARGV[5]  for a pin: the digest expected to be pinned now ('' for none),
--          or '*' for any
-- ARGV[6]  entries kept when `PREFIX:{plugins}:keep` is not set (the
--          host's default, so it lives in one place)
--
-- The number of entries kept is `PREFIX:{plugins}:keep`, at least 2.
--
-- Returns {'recorded', DIGEST…}: the digests no entry names any more, whose
-- bytes the caller deletes; {'unchanged'} (a directory version the history
-- already names as the newest one from a directory, or a pin of what is
-- pinned); or {'conflict'} (the pin changed since the caller looked).

local name, digest, entry = ARGV[1], ARGV[2], ARGV[3]
local pin, expected = ARGV[4] == '1', ARGV[5]
local keep = math.max(2, tonumber(redis.call('GET', P .. ':keep')) or tonumber(ARGV[6]))
local history = history_key(name)
local pinned = PINNED

if pin then
  local now = redis.call('HGET', pinned, name)
  local current = now and decode(now) or {}
  if expected ~= '*' and (current.digest or '') ~= expected then return {'conflict'} end
  local new = decode(entry)
  if current.digest == digest and current.manifest == new.manifest then
    return {'unchanged'}
  end
else
  -- Every worker that loads the same file records it: once is enough.
  for _, e in ipairs(redis.call('LRANGE', history, 0, -1)) do
    local v = decode(e)
    if v.action == 'directory' then
      if v.digest == digest then return {'unchanged'} end
      break
    end
  end
end

redis.call('LPUSH', history, entry)
redis.call('SADD', P .. ':names', name)
if pin then
  redis.call('HSET', pinned, name, entry)
  announce_pin(name, digest)
end

-- Keep `keep` entries; name the versions no entry names any more.
local gone = {'recorded'}
local dropped = redis.call('LRANGE', history, keep, -1)
if #dropped > 0 then
  redis.call('LTRIM', history, 0, keep - 1)
  local kept = {}
  for _, e in ipairs(redis.call('LRANGE', history, 0, -1)) do
    local d = decode(e).digest
    if d then kept[d] = true end
  end
  local p = redis.call('HGET', pinned, name)
  if p then
    local d = decode(p).digest
    if d then kept[d] = true end
  end
  for _, e in ipairs(dropped) do
    local d = decode(e).digest
    if d and not kept[d] then
      redis.call('DEL', legacy_blob_key(name, d))
      gone[#gone + 1] = d
      kept[d] = true
    end
  end
end
return gone
