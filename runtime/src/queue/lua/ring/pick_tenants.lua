
-- The pick, as a function of both preludes: `ring/pick.lua` calls it on
-- its own, and on one server `claim.lua` calls it for its caller's next
-- claim, in the claim's own call (one script call and one TIME less per
-- claim, which at idle and at moderate rates is a claim of one job or a
-- few).
--
-- First move tenants whose timer is due into the ready set, then read up
-- to k tenants of it in name order from the worker's cursor, going round
-- to the start.
--
-- queue      the queue's prefix, e.g. `spool:{default}`
-- now        Redis' clock, µs
-- cursor     the last tenant the worker visited ('' for the start)
-- inclusive  true to include the cursor itself (its turn is not over)
-- k          how many tenants at most
-- more       true if the worker's last claim was full and left work: wake
--            another idle worker for it
--
-- Returns {now_us, next_timer_us (-1: none; else µs from now), tenants...}.
-- Each worker keeps its own cursor and turns (weights): the queue keeps no
-- state per claim, and the sum of fair workers is fair.
local function pick_tenants(queue, now, cursor, inclusive, k, more)
  local ready, timers = queue .. ':ready', queue .. ':timers'
  -- The first timer: only if it is due are the due ones moved (at idle
  -- the next is a lease's expiry, seconds away).
  local head = redis.call('ZRANGE', timers, 0, 0, 'WITHSCORES')
  if head[2] and tonumber(head[2]) <= now then
    local due = redis.call('ZRANGEBYSCORE', timers, '-inf', now, 'LIMIT', 0, 1000)
    for _, tenant in ipairs(due) do
      redis.call('ZREM', timers, tenant)
      redis.call('ZADD', ready, 0, tenant)
    end
    head = redis.call('ZRANGE', timers, 0, 0, 'WITHSCORES')
  end

  local out = { now, -1 }
  -- How many tenants are ready: none at idle (a claim that finds its
  -- tenant dry takes it out, on one server in the same call), and then
  -- nothing to read; with all of them read from the cursor on, no need to
  -- go round. (Every command a script calls counts in INFO commandstats.)
  local size = redis.call('ZCARD', ready)
  if size > 0 then
    local from = '-'
    if cursor ~= '' then from = (inclusive and '[' or '(') .. cursor end
    for _, t in ipairs(redis.call('ZRANGEBYLEX', ready, from, '+', 'LIMIT', 0, k)) do
      out[#out + 1] = t
    end
    if #out - 2 < k and #out - 2 < size and cursor ~= '' then
      local to = (inclusive and '(' or '[') .. cursor
      for _, t in ipairs(redis.call('ZRANGEBYLEX', ready, '-', to, 'LIMIT', 0, k - (#out - 2))) do
        out[#out + 1] = t
      end
    end
  end
  -- Work this claim cannot take, or that the last one left: another idle
  -- worker may take a share of it. At most one token waits on the wake
  -- list. (Looked at first: this happens under load, when the token
  -- mostly waits already and no worker is blocked on the list.)
  if #out > 2 and (more or size > #out - 2) and redis.call('LLEN', queue .. ':wake') == 0 then
    redis.call('RPUSH', queue .. ':wake', '1')
  end

  if head[2] then out[2] = math.max(0, tonumber(head[2]) - now) end
  return out
end
