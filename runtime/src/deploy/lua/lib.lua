-- Shared prelude, prepended to every fleet-store script when it is loaded.
--
-- KEYS[1] is always the store's key prefix, `PREFIX:{plugins}`. Every key a
-- script touches starts with it, so all of them hash to the slot of the
-- `{plugins}` tag and the scripts work unchanged on Redis Cluster.

local P = KEYS[1]
local PINNED = P .. ':pinned'

-- A plugin's history: version entries (JSON), newest first.
local function history_key(name) return P .. ':history:' .. name end

-- Where versions' bytes were kept before they moved to a slot of their own
-- per digest (`PREFIX:blob:{DIGEST}:NAME`, which no script can touch: the
-- caller writes and deletes those). Scripts still delete these.
local function legacy_blob_key(name, digest) return P .. ':blob:' .. name .. ':' .. digest end

-- A version entry (JSON) as a table; {} for anything unreadable, so that a
-- hand-edited entry never fails a script half-way.
local function decode(text)
  local ok, value = pcall(cjson.decode, text)
  if ok and type(value) == 'table' then return value end
  return {}
end

-- Tell every worker that the pin of `name` changed (digest '' for none).
local function announce_pin(name, digest)
  redis.call('XADD', P .. ':events', 'MAXLEN', '~', 1000, '*', 'name', name, 'digest', digest)
end
