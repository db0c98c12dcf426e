-- Delete the inboxes of idle waiters that are gone (docs/queue.md,
-- "Hand-over at idle"). An enqueue hands a job to a waiter by pushing it
-- onto the waiter's inbox; a worker killed right then leaves it there.
-- An enqueue used to set each inbox to expire, a command per idle job;
-- now a waiter registers its inbox in `Q:inboxes` under the time (µs,
-- Redis' clock) until which it may hold a job there unread, renewed as
-- it waits (queue/wake.rs), and an enqueue sets no expiry on such an
-- inbox (`Q:wake:r:…`). Past that time the inbox is deleted here, by one
-- worker of the fleet every ten seconds (queue/inboxes.rs). (The job itself is leased, and runs again when its lease lapses:
-- what goes is its copy in the inbox.)
--
-- KEYS[1]  the queue's prefix
--
-- Returns how many registrations lapsed. Only a waiter's own list is
-- deleted: a member that names any other key is dropped from the
-- registry, and the key is left alone.

local inboxes = Q .. ':inboxes'
local gone = redis.call('ZRANGEBYSCORE', inboxes, '-inf', string.format('(%.0f', now_us()),
  'LIMIT', '0', '1000')
if #gone == 0 then return 0 end
local own = Q .. ':wake:r:'
local lists = {}
for _, inbox in ipairs(gone) do
  if inbox:sub(1, #own) == own and #inbox > #own then lists[#lists + 1] = inbox end
end
if #lists > 0 then redis.call('DEL', unpack(lists)) end
redis.call('ZREM', inboxes, unpack(gone))
return #gone
