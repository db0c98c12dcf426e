-- Shared prelude of the tenant-slot queue scripts. Loaded once as part of
-- the queue's function library (queue/scripts.rs): every script is a
-- function of it, called with FCALL, and these definitions are made once at
-- load, not on every call. (Under EVAL, on a Redis without functions, the
-- prelude runs in front of each script.) The state below lives between
-- calls in a library, so every script starts with begin(KEYS).
--
-- KEYS[1] is always one tenant's key prefix in one queue, e.g.
-- `spool:{default/acme}`. Every key a script touches starts with it, so all
-- of them hash to the slot of the `{default/acme}` tag: a script touches one
-- slot, and a Redis Cluster can spread tenants over its nodes.
--
-- Timestamps are microseconds since the Unix epoch, read from Redis' own clock
-- (TIME) so that every worker and every client share one clock (or, for
-- an ack of successes, as the worker knows it from its claim: now_from).

local P
-- The last now_us() of this call (µs), for expiry times.
local clock = 0

local function now_us()
  local t = redis.call('TIME')
  clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
  return clock
end

-- Redis' clock as the caller read it, if it sent a reading (`arg`, whole
-- µs; a worker's ack of jobs it claimed: the claim's TIME plus the time
-- since its reply came, behind Redis' by the reply's trip); else TIME.
-- One command fewer per call, where the caller knows. A reading before
-- 2001 (1e15 µs) is no reading: expiry times from it would have passed.
local function now_from(arg)
  local sent = tonumber(arg)
  if sent and sent >= 1e15 and sent < 2 ^ 53 and sent == math.floor(sent) then
    clock = sent
    return clock
  end
  return now_us()
end

-- The start of every job's key, `P:job:` (set by begin): a loop over a
-- call's jobs makes each key with one concatenation.
local JOB_PREFIX
local function job_key(id) return JOB_PREFIX .. id end

-- A whole number as the text Redis stores. A Lua number handed to
-- redis.call is printed with `%.17g` on every call (thousands of
-- instructions, more than the HSET it goes into); the scripts print `now`
-- and the like once with this and pass the text. Each number is printed
-- once per call (attempt 1 for a whole claim).
local printed = {}
local function text(n)
  if n ~= n then return '0' end
  local s = printed[n]
  if not s then
    -- Beyond 2^53 a double is no exact count any more (a garbage field):
    -- printed as Redis would, not wrapped around by the integer cast.
    s = string.format((n > -2 ^ 53 and n < 2 ^ 53) and '%d' or '%.17g', n)
    printed[n] = s
  end
  return s
end

local PRIORITIES = { high = true, normal = true, low = true }

-- An error's text with its code first, as a reply (Lua's `pcall` hands
-- it back as a table or as a string with the script's position).
local function error_text(e)
  if type(e) == 'table' then e = e.err end
  e = tostring(e):gsub('^[%w_]+:%d+: ', '')
  if not e:match('^%u[%u_]*[%s:]') then e = 'ERR ' .. e end
  return e
end

-- A counter field as a whole number >= 0: missing, garbage, fractions,
-- infinities and NaN all become something HSET/arithmetics cannot choke on.
local function int(value)
  local n = tonumber(value)
  if not n or n ~= n or n == math.huge or n == -math.huge then return 0 end
  n = math.floor(n)
  if n < 0 then return 0 end
  return n
end

-- The fields of a job hash, or nil when the key holds something that is not
-- a hash (a client wrote a string there): the scripts never fail half-way
-- because of one bad key, which would leave the ids they already popped in
-- no list at all.
local function hmget(key, ...)
  local ok = redis.pcall('HMGET', key, ...)
  if type(ok) == 'table' and ok.err then return nil end
  return ok
end

-- Whether `s` is well-formed UTF-8 (ids come from any client; the worker
-- handles them as text).
local function valid_utf8(s)
  -- ASCII (every id the runtime makes) is checked by two C calls.
  if #s <= 64 and math.max(0, s:byte(1, -1)) < 0x80 then return true end
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or (c >= 0xC2 and c < 0xE0) and 2 or (c >= 0xE0 and c < 0xF0) and 3
      or (c >= 0xF0 and c < 0xF5) and 4 or 0
    if len == 0 or i + len - 1 > n then return false end
    for k = i + 1, i + len - 1 do
      local b = s:byte(k)
      if b < 0x80 or b > 0xBF then return false end
    end
    i = i + len
  end
  return true
end

-- Whether the tenant has jobs waiting to start (a ready list or a group
-- in the rotation): one command, since Redis deletes empty lists and sets.
local function has_waiting()
  return redis.call('EXISTS', P .. ':ready:high', P .. ':ready:normal', P .. ':ready:low',
    P .. ':groups') > 0
end

local function ready_key(priority)
  if not PRIORITIES[priority] then priority = 'normal' end
  return P .. ':ready:' .. priority
end

-- The "has work" protocol (docs/queue.md, "Fair share"). The queue's slot
-- keeps the set of tenants to visit (`ready`) and their timers; a tenant
-- script cannot touch it, so it tells the caller what to announce there:
--
-- * `P:in` exists while the tenant is in the queue's ready set or an
--   announcement of it is on its way. A script that gives the tenant
--   claimable work sets it; if it was not set, the script bumps the
--   tenant's sequence number (`seq` in `P:stats`) and returns that number:
--   the caller must announce the tenant as ready under it. `P:in` expires
--   after IN_TTL seconds (the next script that needs it sets it again and
--   announces once more), so an announcement lost on its way costs a
--   tenant at most that long once it enqueues again.
-- * A claim that leaves the tenant without claimable work deletes `P:in`
--   and returns the sequence number it saw: the caller removes the tenant
--   from the ready set only if no later number was announced meanwhile, so
--   an enqueue racing the removal is never lost.
-- * `P:timer` is the earliest visit already asked for while out of the
--   ready set (a delayed job's due time, a lease's expiry, the rate
--   limit's refill); a script asks for an earlier one by returning it,
--   under a new sequence number too, so that a removal decided before it
--   cannot undo the visit.
--
-- Every script that may announce returns {announce_seq, announce_timer,
-- announce_now} first: the number to record, a time to visit (0: none),
-- and 1 when the tenant is ready now.
local IN_TTL = '30'
local announce_seq, announce_timer, announce_now = 0, 0, 0
-- Set by make_ready and release_group: announce_ready() once, at the end
-- (in announced()), rather than once per job.
local made_ready = false

local function announce_ready()
  if redis.call('SET', P .. ':in', '1', 'NX', 'EX', IN_TTL) then
    announce_seq = redis.call('HINCRBY', P .. ':stats', 'seq', '1')
    announce_now = 1
  end
end

local function ask_timer(at)
  at = math.max(at, 1)
  if redis.call('EXISTS', P .. ':in') == 1 then return end
  local current = tonumber(redis.call('GET', P .. ':timer'))
  if current and current <= at then return end
  redis.call('SET', P .. ':timer', at)
  announce_seq = redis.call('HINCRBY', P .. ':stats', 'seq', '1')
  if announce_timer == 0 or at < announce_timer then announce_timer = at end
end

-- On a Redis that is not a cluster the queue's slot is no other node's,
-- and a caller may pass the queue's prefix as KEYS[2]: the script then
-- writes its announcement there itself, atomically with the work it
-- announces, as ring/announce.lua would (which this mirrors), and returns
-- nothing to announce. An enqueue's job is then claimable one round trip
-- sooner. (nil: the caller announces, as on a cluster.)
local Q
-- A queue-slot write; false if Redis refused it (a key of the wrong type
-- written by hand): the work is stored already, so the script must not
-- fail now.
local function queue_write(...)
  local r = redis.pcall(...)
  return not (type(r) == 'table' and r.err)
end
-- The tenant whose prefix P is, when the queue's prefix Q was passed and
-- P is `PREFIX:{QUEUE/TENANT}` for Q `PREFIX:{QUEUE}`; nil otherwise (no
-- Q, or a tenant name with a '/'): the caller writes the queue's slot.
local function queue_tenant()
  if not Q then return nil end
  local tenant = P:match('/([^/]*)}$')
  if not tenant or P ~= Q:sub(1, -2) .. '/' .. tenant .. '}' then return nil end
  return tenant
end

local function announce_in_queue()
  local tenant = queue_tenant()
  if not tenant then return end
  local ok
  if announce_seq > 0 then
    ok = queue_write('ZADD', Q .. ':seq', 'GT', announce_seq, tenant)
  else
    ok = queue_write('ZADD', Q .. ':seq', 'NX', 0, tenant)
  end
  if ok and announce_now == 1 then ok = queue_write('ZADD', Q .. ':ready', 0, tenant) end
  if ok and announce_timer > 0 then
    ok = queue_write('ZADD', Q .. ':timers', 'LT', announce_timer, tenant)
  end
  if ok and (announce_now == 1 or announce_timer > 0) then
    -- At most one token waits (see ring/prelude.lua): pushed, and taken
    -- back off the tail if one was there already. At idle the list is
    -- empty (a worker is blocked on it): one command, not a look and a
    -- push.
    local waiting = redis.pcall('RPUSH', Q .. ':wake', announce_now == 1 and ('t:' .. tenant) or '1')
    if type(waiting) ~= 'number' then
      ok = false
    elseif waiting > 1 then
      ok = queue_write('RPOP', Q .. ':wake')
    end
  end
  -- Refused: the reply still carries the announcement, for the caller to
  -- make (and log if it fails), as on a cluster.
  if ok then announce_seq, announce_timer, announce_now = 0, 0, 0 end
end

-- The first three values of a reply (see above).
local function announced(out)
  if made_ready then announce_ready() end
  if Q and (announce_seq > 0 or announce_timer > 0 or announce_now == 1) then
    announce_in_queue()
  end
  table.insert(out, 1, announce_now)
  table.insert(out, 1, announce_timer)
  table.insert(out, 1, announce_seq)
  return out
end

-- Groups: `P:group:G` lists group G's waiting jobs in enqueue order;
-- `P:groups` (a zset of score 0, read in name order) the groups that may
-- have a job to release; `P:gall` every group with jobs waiting (for
-- counts); `P:held:G` the ids holding G's slots (claimed,
-- retrying or handed back, until they succeed or die); `P:gpaused` paused
-- groups. A job holding a slot carries `group_held` = 1.
local function group_key(g) return P .. ':group:' .. g end

-- A job of group `g` that held a slot reached its end: free the slot, and
-- put the group back in the rotation if it has jobs waiting.
local function release_group(id, g)
  if not g or g == '' then return end
  if redis.call('SREM', P .. ':held:' .. g, id) == 1 then
    redis.call('HDEL', job_key(id), 'group_held')
    if redis.call('LLEN', group_key(g)) > 0 then
      redis.call('ZADD', P .. ':groups', '0', g)
      made_ready = true
    end
  end
end

-- Queue `id` in group `g`: at the tail (`push` RPUSH, a new job) or back
-- at the head (LPUSH), and put the group in the rotation and the counts.
local function into_group(id, g, push)
  redis.call(push, group_key(g), id)
  redis.call('ZADD', P .. ':groups', '0', g)
  redis.call('ZADD', P .. ':gall', '0', g)
end

-- Put a job back where it can be claimed: a job holding its group's slot
-- (or of no group) goes to the consuming end of its ready list, a group
-- job that does not hold one back to the head of its group.
local function make_ready(id, priority, g, held)
  if g and g ~= '' and held ~= '1' then
    into_group(id, g, 'LPUSH')
  else
    redis.call('RPUSH', ready_key(priority), id)
  end
  made_ready = true
end

-- Counters for the stats hash, written once per script call (see count()
-- and flush_counts()) rather than once per job.
local counts = {}
local function count(name) counts[name] = (counts[name] or 0) + 1 end
local function flush_counts()
  for name, n in pairs(counts) do
    if n ~= 0 then redis.call('HINCRBY', P .. ':stats', name, text(n)) end
  end
end

-- The moment `ttl` seconds after the call's clock, as PEXPIREAT's text
-- (ms), printed once per TTL per call. An absolute time in ms is what
-- Redis stores and replicates: EXPIRE with seconds makes it rewrite the
-- command for its replicas and AOF, per key (~900 of the ~9,700
-- instructions an expiry cost per job, by scripts/redis-cost.sh).
local deadlines = {}
-- The longest TTL: ten years (a larger one would print as a float, which
-- PEXPIREAT refuses after the outcome is written).
local MAX_TTL = 315360000
local function deadline_ms(ttl)
  local at = deadlines[ttl]
  if not at then
    if clock == 0 then now_us() end
    at = text(math.floor(clock / 1000) + math.min(int(ttl), MAX_TTL) * 1000)
    deadlines[ttl] = at
  end
  return at
end

-- A job reached a terminal state: give its record a TTL and tell a client
-- blocked in `enqueue --wait` (only when it asked, `wait` = 1). `key`, the
-- record's key, if the caller has it at hand.
local function finish(id, status, ttl, waiting, key)
  redis.call('PEXPIREAT', key or job_key(id), deadline_ms(ttl))
  if waiting == '1' then
    local done = P .. ':done:' .. id
    redis.call('RPUSH', done, status)
    redis.call('EXPIRE', done, 600)
  end
  count(status)
end

-- Put a job in the dead letters, dropping the oldest beyond `cap` (their
-- records go with them: the dead letters are bounded).
local function bury(id, now, ttl, cap, waiting, group)
  release_group(id, group)
  local dead = P .. ':dead'
  redis.call('ZADD', dead, now, id)
  local excess = redis.call('ZCARD', dead) - cap
  if excess > 0 then
    local old = redis.call('ZRANGE', dead, 0, excess - 1)
    redis.call('ZREMRANGEBYRANK', dead, 0, excess - 1)
    for _, o in ipairs(old) do
      -- Only records that are still dead (an id may have been reused); a
      -- key that is not a hash (set aside by a claim) is left alone.
      local status = redis.pcall('HGET', job_key(o), 'status')
      if status == 'dead' then redis.call('DEL', job_key(o)) end
    end
  end
  finish(id, 'dead', ttl, waiting)
end

-- Attempts whose worker lost them (a lease that expired: the worker died;
-- or a job thread the worker's watchdog gave up on: it wedged) after which
-- the job is taken for the cause and dead-lettered as `worker-crash`.
local CRASHES = 3
local LAPSE_FIELDS = { 'attempt', 'max_attempts', 'worker', 'priority', 'wait', 'status',
  'lost_workers', 'lease_expiries', 'group', 'token' }

-- A running job's lease (docs/queue.md, "Delivery guarantees"): its entry
-- `ID TOKEN` in `P:leased`, scored by the lease's end (µs). The entry
-- names the attempt, not only the job, so that removing it is the ack's
-- fence: `ZREM` finds it only while that attempt holds the job (ack.lua).
-- Workers of the versions before it lease in `P:leases`, by id alone:
-- every reader looks at both (docs/queue.md, "Upgrading past `T:leased`").
local function lease_entry(token, id) return id .. ' ' .. token end
-- An entry's token and id (nil for one written by hand otherwise). (The
-- token last: an id may hold spaces, a token is digits.)
local function lease_parts(entry)
  local id, token = entry:match('^(.*) (%d+)$')
  return token, id
end
-- Which of the two lease keys exist: `leased` (this version's), `leases`
-- (the version before's, by id), and `delayed` with them (claim.lua's
-- timers look at all three): one EXISTS, each key named so many times
-- that the count tells them apart.
local function lease_keys_present()
  local leased, leases, delayed = P .. ':leased', P .. ':leases', P .. ':delayed'
  local v = redis.call('EXISTS', delayed, leased, leased, leases, leases, leases, leases)
  return v % 2 == 1, math.floor(v / 2) % 2 == 1, v >= 4
end

-- A running job's attempt ended without an outcome from its handler: the
-- attempt counts, and the job backs off like a retry (base `backoff` µs,
-- doubling per attempt, at most 10 min) so that a job that kills or wedges
-- its workers cannot crash-loop the fleet; the CRASHES-th such ending, or
-- the last attempt, dead-letters it. `f` holds LAPSE_FIELDS of the job;
-- `kind` and `why` describe this ending (`why` gets the worker's id).
local function lapse(id, f, now, backoff, dead_ttl, dead_cap, kind, why)
  local key = job_key(id)
  local attempt, max = int(f[1]), int(f[2] or 5)
  local who = f[3] or '?'
  local lost = (f[7] and f[7] ~= '') and (f[7] .. ', ' .. who) or who
  local expiries = int(f[8]) + 1
  local err
  if expiries >= CRASHES then
    err = cjson.encode({ kind = 'worker-crash', retryable = false, workers = lost,
      message = expiries .. ' attempts ended with their worker gone or wedged (' .. lost
        .. '): the job may crash or wedge workers, so it is not run again' })
  else
    err = cjson.encode({ kind = kind, retryable = attempt < max,
      message = why(who, attempt) })
  end
  redis.call('HSET', key, 'error', err, 'lost_workers', lost, 'lease_expiries', expiries)
  if attempt >= max or expiries >= CRASHES then
    redis.call('HSET', key, 'status', 'dead', 'finished_us', now)
    bury(id, now, dead_ttl, dead_cap, f[5], f[9])
  else
    local at = now + math.floor(math.min(backoff * 2 ^ (math.max(attempt, 1) - 1), 600000000))
    redis.call('HSET', key, 'status', 'delayed', 'run_at_us', at)
    redis.call('ZADD', P .. ':delayed', at, id)
    ask_timer(at)
  end
end

-- Every script's first step: its tenant, and a clean slate for the state
-- above (what to announce, counters, printed numbers).
local function begin(keys)
  P = keys[1]
  JOB_PREFIX = P .. ':job:'
  Q = keys[2]
  announce_seq, announce_timer, announce_now = 0, 0, 0
  made_ready = false
  counts = {}
  printed = {}
  deadlines = {}
  clock = 0
end
