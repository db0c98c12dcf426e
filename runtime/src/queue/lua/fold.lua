-- Fold a quiet tenant's list of succeeded ids (`P:recent`) into its
-- counter before the list expires: each entry is a success not yet added
-- to `succeeded` in `P:stats` (ack.lua, keep_newest), and an expired list
-- would take those counts with it. Run by a worker once an hour
-- (queue/fold.rs).
--
-- KEYS[1]  the tenant's prefix in the queue
-- ARGV[1]  the window (ms): a list set to expire within it is folded
--
-- The list expires thirty days past the records it lists (ack.lua,
-- KEPT_MARGIN_S); the window is shorter than that by a day, so the
-- records the list names have all expired by then, and none leaves the
-- count cap early. Returns how many successes were added to the
-- counter.

local list = P .. ':recent'
local left = redis.call('PTTL', list)
if left < 0 or left > tonumber(ARGV[1]) then return 0 end
local n = redis.pcall('LLEN', list)
-- (A key of another type, written by hand: not a count of anything.)
if type(n) ~= 'number' then return 0 end
if n > 0 then redis.call('HINCRBY', P .. ':stats', 'succeeded', n) end
redis.call('DEL', list)
return n
