-- Pick the tenants a worker's next claim visits (`pick_tenants` in
-- ring/pick_tenants.lua, shared with claim.lua, says how).
--
-- KEYS[1]  the queue's prefix
-- ARGV[1]  cursor: the last tenant the worker visited ('' for the start)
-- ARGV[2]  1 to include the cursor itself (its turn is not over), else 0
-- ARGV[3]  K
-- ARGV[4]  1 if the worker's last claim was full and left work: wake
--          another idle worker for it
--
-- Returns {now_us, next_timer_us (-1: none; else µs from now), tenants...}.

return pick_tenants(Q, now_us(), ARGV[1], ARGV[2] == '1', tonumber(ARGV[3]), ARGV[4] == '1')
