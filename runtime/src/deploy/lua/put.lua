-- Record a plugin version: store its bytes (content-addressed), push it on
-- the plugin's history, and for a deploy or a rollback pin it, telling every
-- worker through the events stream.
--
-- KEYS[1]  PREFIX:{plugins}; every key below starts with it (one slot).
-- ARGV[1]  plugin name, tenant/name
-- ARGV[2]  version digest
-- ARGV[3]  the version entry, JSON (with "digest" and "manifest" fields)
-- ARGV[4]  '1' to pin it (deploy, rollback), '0' to only record it
--          (a worker loaded it from its directory)
-- ARGV[5]  the component bytes, or '' when they should be stored already
-- ARGV[6]  for a pin: the digest expected to be pinned now ('' for none),
--          or '*' for any
-- ARGV[7]  entries kept when `PREFIX:{plugins}:keep` is not set (the
--          host's default, so it lives in one place)
--
-- The number of entries kept is `PREFIX:{plugins}:keep`, at least 2.
--
-- Returns 'recorded'; 'unchanged' (a directory version the history already
-- names as the newest one from a directory, or a pin of what is pinned);
-- 'need_blob' (call again with the bytes); or 'conflict' (the pin changed
-- since the caller looked).

local name, digest, entry = ARGV[1], ARGV[2], ARGV[3]
local pin, blob, expected = ARGV[4] == '1', ARGV[5], ARGV[6]
local keep = math.max(2, tonumber(redis.call('GET', P .. ':keep')) or tonumber(ARGV[7]))
local history = history_key(name)
local pinned = PINNED

if pin then
  local now = redis.call('HGET', pinned, name)
  local current = now and decode(now) or {}
  if expected ~= '*' and (current.digest or '') ~= expected then return 'conflict' end
  local new = decode(entry)
  if current.digest == digest and current.manifest == new.manifest then
    return 'unchanged'
  end
else
  -- Every worker that loads the same file records it: once is enough.
  for _, e in ipairs(redis.call('LRANGE', history, 0, -1)) do
    local v = decode(e)
    if v.action == 'directory' then
      if v.digest == digest then return 'unchanged' end
      break
    end
  end
end

if blob ~= '' then
  redis.call('SET', blob_key(name, digest), blob)
elseif redis.call('EXISTS', blob_key(name, digest)) == 0 then
  return 'need_blob'
end

redis.call('LPUSH', history, entry)
redis.call('SADD', P .. ':names', name)
if pin then
  redis.call('HSET', pinned, name, entry)
  announce_pin(name, digest)
end

-- Keep `keep` entries; drop the bytes of versions no entry names any more.
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
      redis.call('DEL', blob_key(name, d))
      kept[d] = true
    end
  end
end
return 'recorded'
