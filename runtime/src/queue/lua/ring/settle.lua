-- Take tenants that ran out of claimable work out of the ready set.
--
-- KEYS[1]  the queue's prefix
-- ARGV     tenant, seq, timer_us, ... (triples) as claims returned them
--          (leave_seq, timer_us)
--
-- A tenant leaves `Q:ready` only if no sequence number above `seq` was
-- announced for it: an enqueue that raced the claim announced a higher
-- one, and its job is not stranded. A timer > 0 asks for a visit then
-- (only sooner). Returns how many left.

local left = 0
for i = 1, #ARGV, 3 do
  local tenant, seq, timer = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local announced = tonumber(redis.call('ZSCORE', Q .. ':seq', tenant)) or 0
  if announced <= seq then
    left = left + redis.call('ZREM', Q .. ':ready', tenant)
  end
  if timer > 0 then
    redis.call('ZADD', Q .. ':timers', 'LT', timer, tenant)
  end
end
return left
