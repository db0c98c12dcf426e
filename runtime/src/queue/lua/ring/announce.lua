-- Announce tenants: ready to visit now, or at a time.
--
-- KEYS[1]  the queue's prefix
-- ARGV     tenant, seq, timer_us, ready, ... (quadruples) as a tenant
--          script returned them: seq > 0 is recorded (only upwards);
--          ready = 1 puts the tenant in `Q:ready`; timer_us > 0 asks for a
--          visit then (only sooner). Every tenant named is registered in
--          `Q:seq`.
--
-- Wakes an idle worker when anything was announced, naming the first
-- tenant announced ready now. Returns 1.

local woke, first_ready = false, nil
for i = 1, #ARGV, 4 do
  local tenant, seq, timer = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if seq > 0 then
    redis.call('ZADD', Q .. ':seq', 'GT', seq, tenant)
  else
    redis.call('ZADD', Q .. ':seq', 'NX', 0, tenant)
  end
  if ARGV[i + 3] == '1' then
    redis.call('ZADD', Q .. ':ready', 0, tenant)
    woke = true
    first_ready = first_ready or tenant
  end
  if timer > 0 then
    redis.call('ZADD', Q .. ':timers', 'LT', timer, tenant)
    woke = true
  end
end
if woke then wake(first_ready) end
return 1
