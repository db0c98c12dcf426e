-- Pause or resume one tenant, or one group of it, in one queue.
--
-- KEYS[1]  the tenant's prefix in the queue
-- ARGV[1]  pause | resume
-- ARGV[2]  a group name, or '' for the whole tenant
--
-- A pause only stops new starts: running jobs finish, queued ones wait
-- (claims skip a paused tenant, and a paused group's turn). Returns
-- {announce_seq, timer_us, ready, changed}: changed is 1 when the state changed;
-- the caller announces the tenant as for any other tenant script (see
-- "has work" in lib.lua).

local action, group = ARGV[1], ARGV[2]
local changed
if group == '' then
  if action == 'pause' then
    changed = redis.call('SET', P .. ':paused', '1', 'NX') and 1 or 0
  else
    changed = redis.call('DEL', P .. ':paused')
    if changed == 1 then announce_ready() end
  end
elseif action == 'pause' then
  changed = redis.call('SADD', P .. ':gpaused', group)
else
  changed = redis.call('SREM', P .. ':gpaused', group)
  if changed == 1 and redis.call('LLEN', group_key(group)) > 0 then
    redis.call('ZADD', P .. ':groups', 0, group)
    announce_ready()
  end
end
return announced({ changed })
