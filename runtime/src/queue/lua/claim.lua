-- Claim up to N jobs of one tenant for one worker, after promoting the
-- tenant's due delayed jobs and backing off jobs whose lease expired. One
-- round trip does all three, so any worker keeps the queue moving and there
-- is no scheduler process.
--
-- KEYS[1]  the tenant's prefix in the queue, e.g. `spool:{default/acme}`
-- KEYS[2]  (optional, not on a cluster) the queue's prefix, e.g.
--          `spool:{default}`: a tenant found dry leaves the queue's ready
--          set in this call (leave_seq SETTLED, below)
-- ARGV[1]  record TTL, seconds (terminal records)
-- ARGV[2]  dead-letter record TTL, seconds
-- ARGV[3]  dead-letter cap
-- ARGV[4]  worker id
-- ARGV[5]  N, the most jobs to claim (0: only tend the tenant and report)
-- ARGV[6]  lease, microseconds
-- ARGV[7]  backoff, microseconds: a job whose lease expired waits
--          backoff · 2^(attempt-1) (at most 10 min) before it runs again
-- ARGV[8]  the tenant's concurrency cap: at most this many of its jobs
--          leased at once, fleet-wide (0: none)
-- ARGV[9]  the tenant's rate, jobs per hour (0: none): a token bucket in
--          `P:bucket` lets claims start no more jobs than that
-- ARGV[10] the bucket's size, jobs (0: a tenth of a second's rate, at
--          least 1)
-- ARGV[11] jobs of one group leased at once (0: no limit)
-- ARGV[12] the claim's byte budget (0: none): once the records taken add
--          up to it, the rest of the ids popped go back where they came
--          from, untouched, in order (a first job is taken whatever its
--          size). Packing 256 jobs of megabytes into one reply would take
--          a few times their size of Redis' memory for the call.
-- ARGV[13..16] (optional, with KEYS[2]) the caller's next pick, as
--          ring/pick.lua's ARGV[1..4]: its reply is then the eighth value
--          (PICK), after this claim's own settle, so the worker's next
--          claim needs no pick of its own and this one no second script
--          call. (Refused, by a key of the wrong type: no eighth value,
--          and the claim stands.)
--
-- Returns {now_us, announce_seq, leave_seq, timer_us, cut, FIELDS, JOBS[, PICK]}:
-- announce_seq > 0 asks the caller to announce the tenant as ready under
-- that number; leave_seq >= 0 (else -1) says the tenant has no claimable
-- work now (paused, at its cap, out of rate, or nothing queued): the caller
-- takes it out of the queue's ready set under that number, and sets its
-- timer to timer_us (> 0) if given (see "has work" in lib.lua); -2
-- (SETTLED) says the same, but the call did both itself (KEYS[2]). cut is 1
-- when the byte budget ended the claim before N (the caller may wake
-- another worker for the rest, as for a full claim). FIELDS names
-- the values each job carries after its first three: `fresh`, 1 when the
-- record holds nothing an earlier attempt wrote, and `record`, the job's
-- hash as it was before this claim (HGETALL: name, value, name, value,
-- ...; the worker takes the envelope fields from it): whole when fresh
-- and small, else only its envelope fields; a job taken from a group ends
-- with `group`, its name (a name twice: the last counts). JOBS is one
-- string, the jobs packed as MessagePack (cmsgpack): an array of
-- {id, token, attempt, fresh, record}. (One string is one value for the
-- worker's RESP parser, not a dozen per job.) The worker decodes jobs by
-- these names, so a value added here cannot shift another.
--
-- Within the tenant, priorities share its claims 6:3:1: the N claim slots
-- continue a counter kept in the tenant's stats hash (`rr`): slot k prefers
-- high for k mod 10 in 0..5, normal for 6..8 and low for 9 (while only
-- normal jobs wait, one pop and the counter stays). Each list is
-- popped once for its share (RPOP with a count, Redis >= 6.2), and what a
-- list could not supply is taken from the others in priority order: low
-- gets at least a tenth of the claims while it has work. Grouped jobs get
-- half of the slots (what one side cannot use goes to the other); groups
-- take turns in name order from a cursor (`P:gcursor`), one job per turn.

-- Made once, when the library loads (queue/scripts.rs): constants, and
-- functions that need nothing of one call.

-- The statuses of a record that runs or ran (step 1).
local RAN = { running = true, succeeded = true, dead = true, cancelled = true }

-- The ready lists by band, and the band of claim slot `slot` (6:3:1).
local names = { 'high', 'normal', 'low' }
local function band_of(slot)
  local m = slot % 10
  return m < 6 and 1 or (m < 9 and 2 or 3)
end

-- The fields the claim reads from a record, by what it does with them
-- (one table lookup per field, not a chain of comparisons: ~750
-- instructions a job). MARK: a field that marks a record an earlier
-- attempt or hand-back wrote to (an ack, a lapse; `error` also for
-- records of older versions and records written by hand); without any of
-- them the reply says `fresh` = 1, and the worker's outcome need not
-- clear what is not there.
local STATUS, PAYLOAD, ATTEMPT, TOKEN, WAIT, MARK = 1, 2, 3, 4, 5, 6
local READS = { status = STATUS, payload = PAYLOAD, attempt = ATTEMPT, token = TOKEN,
  wait = WAIT, finished_us = MARK, requeued_us = MARK, lease_expiries = MARK, error = MARK }
-- The envelope: all of a marked record the reply carries (an earlier
-- attempt's output or logs may be megabytes the worker has no use for).
-- (`group` and `idem` too: a worker that saw neither tells its ack so,
-- which then need not look for them, see ack.lua.)
local ENVELOPE = { plugin = true, content_type = true, payload = true, max_attempts = true,
  enqueued_us = true, wait = true, priority = true, waiting_since_us = true, no_cache = true,
  group = true, idem = true }
-- The statuses of a record whose id, popped from a list, is not run: a
-- copy of an id a client pushed twice (see the claim loop below).
local SKIP = { running = true, succeeded = true, dead = true, cancelled = true,
  retrying = true, delayed = true }
-- Whether a record (HGETALL's reply) holds a group slot. (Asked only of
-- ids taken from a group: a job holding one is never in a group's list.)
local function holds_slot(all)
  for j = 1, #all, 2 do
    if all[j] == 'group_held' then return all[j + 1] == '1' end
  end
  return false
end

-- The names of the values each job of the reply carries after its first
-- three (see the header; queue/reply.rs decodes by them).
local FIELDS = { 'fresh', 'record' }
-- How soon a tenant that left at its cap is looked at again (µs).
local CAP_LOOK_US = 10000000

-- The reply, with the next pick when one was asked for (see ARGV[13]).
local function with_pick(out, argv, now)
  if argv[13] and Q then
    local ok, picked = pcall(pick_tenants, Q, now, argv[13], argv[14] == '1',
      tonumber(argv[15]), argv[16] == '1')
    if ok then out[8] = picked end
  end
  return out
end

-- Append the ids `popped` from ready list `list` to `ids`, noting the
-- run in `runs` ({first index in ids, list}); how many.
local function take_from(runs, list, popped, ids)
  runs[#runs + 1] = { #ids + 1, list }
  for _, id in ipairs(popped) do ids[#ids + 1] = id end
  return #popped
end
-- The ready list ids[k] came from (k not taken from a group).
local function list_of(runs, k)
  for r = #runs, 1, -1 do
    if runs[r][1] <= k then return runs[r][2] end
  end
end
-- The earlier of two times (either may be false).
local function earlier(timer, at)
  if at and (not timer or at < timer) then return at end
  return timer
end

--[[ per call ]]
local record_ttl, dead_ttl, dead_cap = ARGV[1], ARGV[2], tonumber(ARGV[3])
local worker, n, lease = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local backoff = tonumber(ARGV[7])
local cap, rate, burst, group_cap = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]),
  tonumber(ARGV[11])
-- (0, or none given: no budget.)
local budget = tonumber(ARGV[12]) or 0
if budget <= 0 then budget = math.huge end
local now = now_us()
local now_s = text(now)

-- Whether anything is delayed or running: at idle neither is, and the
-- scans below (and the timer's looks at the end) are skipped, each where
-- its key does not exist. (Every command a script calls costs Redis time
-- and counts in INFO commandstats; leases live in `leased`, and in
-- `leases` for workers of the versions before it: lease_entry in lib.lua.)
-- `others`: how many of the keys that make a claim more than one pop
-- exist (paused, groups, high or low jobs; see step 3). At idle none of
-- them either: one look for both.
local delayed, leased, leases = P .. ':delayed', P .. ':leased', P .. ':leases'
local ring = P .. ':groups'
local OTHERS = { P .. ':paused', ring, P .. ':ready:high', P .. ':ready:low' }
local others = redis.call('EXISTS', delayed, leased, leases, unpack(OTHERS))
local has_delayed, has_leased, has_leases = false, false, false
if others > 0 then has_delayed, has_leased, has_leases = lease_keys_present() end
local timing = (has_delayed and 1 or 0) + (has_leased and 1 or 0) + (has_leases and 1 or 0)
others = others - timing

-- 1. Promote due delayed jobs. ZREM in the same script: each exactly once.
-- Ids without a job hash are dropped (nothing to run); a key that is not a
-- hash is parked in the dead letters, as the claim below does. A hash
-- without `status` (a minimal plain-command envelope) is promoted; one
-- whose status says it runs or ran (RAN) is not.
local due = has_delayed and redis.call('ZRANGEBYSCORE', delayed, '-inf', now_s, 'LIMIT', '0', '1000') or {}
for _, id in ipairs(due) do
  redis.call('ZREM', delayed, id)
  local key = job_key(id)
  local f = hmget(key, 'priority', 'group', 'group_held', 'status')
  if not f then
    redis.call('ZADD', P .. ':dead', now, id)
  elseif RAN[f[4]] then
    -- A copy of an id that runs or ran already (a client pushed it twice,
    -- and the other copy was claimed): promoting it would run it again.
    -- The id just leaves the delayed set.
  elseif redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'status', 'queued')
    make_ready(id, f[1], f[2], f[3])
  end
end

-- 2. Back off (or bury) jobs whose worker stopped renewing its lease: the
-- attempt counts, and the job waits like a retry, so that a job that kills
-- its workers cannot crash-loop the fleet; after CRASHES such endings it is
-- dead-lettered as `worker-crash`, naming the workers. Its slot under the
-- tenant's cap comes back with it.
-- An entry of `leased` lapses only the attempt it names (an entry whose
-- attempt ended otherwise is just dropped); one of `leases` (by id, a
-- worker of the version before) lapses the job's running attempt unless
-- that attempt holds an entry in `leased` (an id a client reused).
local function lease_lapsed(id, f)
  lapse(id, f, now, backoff, dead_ttl, dead_cap, 'lease-expired', function(who, attempt)
    return 'lease of worker ' .. who .. ' expired during attempt ' .. attempt
      .. ' (the worker stopped or lost Redis)'
  end)
end
local expired = has_leased
  and redis.call('ZRANGEBYSCORE', leased, '-inf', now_s, 'LIMIT', '0', '1000') or {}
for _, entry in ipairs(expired) do
  redis.call('ZREM', leased, entry)
  local token, id = lease_parts(entry)
  local f = id and hmget(job_key(id), unpack(LAPSE_FIELDS))
  if f and f[6] == 'running' and f[10] == token then lease_lapsed(id, f) end
end
local expired_old = has_leases
  and redis.call('ZRANGEBYSCORE', leases, '-inf', now_s, 'LIMIT', '0', '1000') or {}
for _, id in ipairs(expired_old) do
  redis.call('ZREM', leases, id)
  local f = hmget(job_key(id), unpack(LAPSE_FIELDS))
  if f and f[6] == 'running'
      and not redis.call('ZSCORE', leased, lease_entry(f[10] or '', id)) then
    lease_lapsed(id, f)
  end
end

-- 3. How many may start: the tenant is not paused, under its cap, and has
-- tokens in its bucket.
-- Not paused, no groups, only normal jobs (the common case): as looked
-- at the start, unless steps 1 and 2 moved jobs (into any list).
local plain
if #due > 0 or #expired > 0 or #expired_old > 0 then
  plain = redis.call('EXISTS', unpack(OTHERS)) == 0
else
  plain = others == 0
end
local paused = not plain and redis.call('EXISTS', P .. ':paused') == 1
local allowed = paused and 0 or n
-- The jobs leased now, as a cap counts them.
local function running()
  local count = redis.call('ZCARD', leased)
  if has_leases then count = count + redis.call('ZCARD', leases) end
  return count
end
if cap > 0 then allowed = math.min(allowed, math.max(0, cap - running())) end
local bucket, tokens = P .. ':bucket', 0
if rate > 0 then
  if burst <= 0 then burst = math.max(1, math.ceil(rate / 36000)) end
  local b = redis.call('HMGET', bucket, 'tokens', 'at')
  tokens = tonumber(b[1]) or burst
  local at = tonumber(b[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 3600000000)
  allowed = math.min(allowed, math.floor(tokens))
end

-- 4. Take ids: grouped jobs (one per group per turn) and the ready lists.
-- The ids taken; for those taken from a group, the group and whether the
-- id took a slot there (it may already hold one: a duplicate). `runs`:
-- {first index in ids, ready list} for each pop from a ready list.
local ids, group_of, added, runs = {}, {}, {}, {}
-- Whether a pop emptied the tenant's only waiting list (see section 6).
local drained = false
-- How far the 6:3:1 counter moves: by the ready ids this claim keeps
-- (ids past the byte budget go back, and their slots come again).
local rr_moved = 0
local function pop_ready(k, ids)
  if k <= 0 then return 0 end
  -- Only normal jobs waiting, the common case: one pop, and no shares to
  -- keep (the counter need not move while one list competes).
  if plain or redis.call('EXISTS', P .. ':ready:high', P .. ':ready:low') == 0 then
    local list = P .. ':ready:normal'
    local popped = redis.call('RPOP', list, text(k)) or {}
    -- Fewer than asked: the list is empty now, and it was the only one.
    if plain and #popped < k then drained = true end
    return take_from(runs, list, popped, ids)
  end
  local base = tonumber(redis.call('HGET', P .. ':stats', 'rr') or 0) or 0
  local share = { 0, 0, 0 }
  for slot = base, base + k - 1 do
    local band = band_of(slot)
    share[band] = share[band] + 1
  end
  local got, short, empty, popped = 0, 0, {}, { {}, {}, {} }
  local function pop(band, n)
    local list = P .. ':ready:' .. names[band]
    for _, id in ipairs(redis.call('RPOP', list, text(n)) or {}) do
      popped[band][#popped[band] + 1] = id
    end
  end
  for band = 1, 3 do
    if share[band] > 0 then
      pop(band, share[band])
      local took = #popped[band]
      got = got + took
      short = short + share[band] - took
      empty[band] = took < share[band]
    end
  end
  for band = 1, 3 do
    if short <= 0 then break end
    -- A list that gave less than its share is empty: no second look.
    if not empty[band] then
      local before = #popped[band]
      pop(band, short)
      got = got + #popped[band] - before
      short = short - (#popped[band] - before)
    end
  end
  -- In slot order (a slot whose band ran dry takes the highest band
  -- left), so that a claim the byte budget cuts short keeps 6:3:1 too.
  local next_of = { 1, 1, 1 }
  for slot = base, base + got - 1 do
    local band = band_of(slot)
    if next_of[band] > #popped[band] then
      band = next_of[1] <= #popped[1] and 1 or (next_of[2] <= #popped[2] and 2 or 3)
    end
    ids[#ids + 1] = popped[band][next_of[band]]
    runs[#runs + 1] = { #ids, P .. ':ready:' .. names[band] }
    next_of[band] = next_of[band] + 1
  end
  rr_moved = rr_moved + got
  return got
end

-- One turn of a group: the head of its list, if the group is not paused
-- and has a free slot. A group that cannot give leaves the rotation (a
-- slot freed, a resume or an enqueue puts it back).
local function take_turn(g, ids)
  local held = P .. ':held:' .. g
  if redis.call('SISMEMBER', P .. ':gpaused', g) == 1
      or (group_cap > 0 and redis.call('SCARD', held) >= group_cap) then
    redis.call('ZREM', ring, g)
    return 0
  end
  local id = redis.call('LPOP', group_key(g))
  if not id then
    redis.call('ZREM', ring, g)
    redis.call('ZREM', P .. ':gall', g)
    return 0
  end
  -- `added` false: the id already held a slot (a client pushed it twice);
  -- a skipped duplicate must not free the slot its first copy holds.
  local n = #ids + 1
  ids[n], group_of[n] = id, g
  added[n] = redis.call('SADD', held, id) == 1
  local empty = redis.call('LLEN', group_key(g)) == 0
  if empty then redis.call('ZREM', P .. ':gall', g) end
  if empty or (group_cap > 0 and redis.call('SCARD', held) >= group_cap) then
    redis.call('ZREM', ring, g)
  end
  return 1
end

-- The group cursor before this claim (nil: not read).
local cursor_before = nil
local function release_groups(k, ids)
  if k <= 0 then return 0 end
  local cursor = redis.call('GET', P .. ':gcursor')
  if cursor_before == nil then cursor_before = cursor end
  local got, pass, from_start, visits = 0, 0, cursor == false, 0
  while got < k and visits < 3 * k + 3 do
    local batch
    if cursor then
      batch = redis.call('ZRANGEBYLEX', ring, '(' .. cursor, '+', 'LIMIT', '0', text(k - got))
    else
      batch = redis.call('ZRANGEBYLEX', ring, '-', '+', 'LIMIT', '0', text(k - got))
    end
    if #batch == 0 then
      -- The end of the rotation: round again, unless a whole round gave
      -- nothing (or the rotation is empty).
      if not cursor or (from_start and pass == 0) then break end
      cursor, pass, from_start = false, 0, true
    else
      for _, g in ipairs(batch) do
        visits = visits + 1
        cursor = g
        local took = take_turn(g, ids)
        got, pass = got + took, pass + took
        if got >= k then break end
      end
    end
  end
  if cursor then redis.call('SET', P .. ':gcursor', cursor) end
  return got
end

if allowed > 0 then
  -- Half to groups; an odd slot goes to each side in turn (`gturn`), so a
  -- claim of one job does not always serve the same side.
  local grouped = 0
  local grouping = not plain and redis.call('EXISTS', ring) == 1
  if grouping then
    grouped = math.floor(allowed / 2)
    if allowed % 2 == 1 and redis.call('HINCRBY', P .. ':stats', 'gturn', '1') % 2 == 1 then
      grouped = grouped + 1
    end
  end
  local got = release_groups(grouped, ids)
  got = got + pop_ready(allowed - got, ids)
  -- (No rotation, no group to ask: a short claim at idle costs nothing
  -- more.)
  if got < allowed and grouping then release_groups(allowed - got, ids) end
end

-- The order the ids are leased in: groups' and ready lists' in turn
-- (each side in the order it was taken), the side to start with taking
-- turns too, so that a claim the byte budget cuts short serves both.
-- (Only when both gave ids: else the order they were taken in.)
local order = nil
local g_side, r_side = {}, {}
if next(group_of) then
  for k = 1, #ids do
    if group_of[k] then g_side[#g_side + 1] = k else r_side[#r_side + 1] = k end
  end
end
if #g_side > 0 and #r_side > 0 then
  local turn = redis.call('HINCRBY', P .. ':stats', 'mturn', '1') % 2
  local sides = turn == 1 and { g_side, r_side } or { r_side, g_side }
  order = {}
  for i = 1, math.max(#g_side, #r_side) do
    for _, side in ipairs(sides) do
      if side[i] then order[#order + 1] = side[i] end
    end
  end
end

-- 5. Lease them. Each job carries `fresh`, then its whole record (see the
-- header).
local out = { now, 0, -1, 0, 0, FIELDS }
local jobs = {}
local lease_until = text(now + lease)
local lease_args = {}
-- The entries of earlier attempts of the jobs claimed (see below), and
-- their ids where `leases` exists.
local stale, old_ids = {}, {}
local claimed = 0
-- The bytes of the records taken, and the first id left for the budget.
local bytes, over = 0, false
-- Free the slot a skipped id took in its group (only if it took one);
-- a group that left the rotation at its cap comes back if jobs wait.
local function unhold(k)
  local g = group_of[k]
  if g and added[k] then
    redis.call('SREM', P .. ':held:' .. g, ids[k])
    if redis.call('LLEN', group_key(g)) > 0 then redis.call('ZADD', ring, '0', g) end
  end
end
-- Whether every id taken is ASCII letters and digits (ULIDs, as Spool
-- makes them): then each is UTF-8 and the claim need not check them one
-- by one (valid_utf8 cost ~3,800 instructions a job, the batch ~500).
-- tonumber in base 36 reads the ids together in C (strtoul) and gives
-- nil at any byte that is not a letter or digit; but it stops at a NUL
-- byte as at the end, hence the second look.
local ascii = false
if #ids > 0 then
  local joined = table.concat(ids)
  ascii = tonumber(joined, 36) ~= nil and not joined:find('\0', 1, true)
end
for o = 1, #ids do
  local k = order and order[o] or o
  local id = ids[k]
  local from_group = group_of[k] or false
  local key = JOB_PREFIX .. id
  -- The whole record, in one pass over it (a fresh one is 4-6 fields;
  -- asking for fields by name costs a pass per missing one), and what the
  -- claim needs of it.
  local all = redis.pcall('HGETALL', key)
  local attempt, before, status, wait, marked = 0, 0, false, false, false
  local before_text
  -- The record's bytes, for the budget (what it takes of the reply, and of
  -- Redis' memory while the call runs): its payload, and 256 bytes for
  -- the rest. (Adding up every field cost 3.5% of a claim.)
  local size = 256
  -- (HGETALL gives a table, or pcall one with `err`.)
  if not all.err then
    for j = 1, #all, 2 do
      local read = READS[all[j]]
      if read then
        if read == STATUS then status = all[j + 1]
        elseif read == PAYLOAD then size = size + #all[j + 1]
        elseif read == ATTEMPT then attempt = int(all[j + 1])
        elseif read == TOKEN then
          before_text = all[j + 1]
          before = int(before_text)
        elseif read == WAIT then wait = all[j + 1]
        else marked = true end
      end
    end
  else
    all = nil
  end
  if not all then
    -- Not a hash: nothing can be recorded there. Park the id in the dead
    -- letters (without a record) so that it is visible, and go on.
    redis.call('ZADD', P .. ':dead', now, id)
    unhold(k)
  elseif not ascii and not valid_utf8(id) then
    -- The worker could not name it back (ids are text on its side): it is
    -- dead-lettered here, never run.
    redis.call('HSET', key, 'status', 'dead', 'finished_us', now, 'error', cjson.encode({
      kind = 'malformed-envelope', retryable = false,
      message = 'the job id is not UTF-8 text; expected an id such as a ULID' }))
    bury(id, now, dead_ttl, dead_cap, wait, added[k] and from_group)
  elseif SKIP[status] then
    -- A duplicate of an id that is already claimed, finished, or waiting
    -- in the delayed set for its retry or its due time (a client pushed
    -- it twice): running it here would be a second attempt beside the
    -- first, or one that skips its backoff.
    unhold(k)
  elseif from_group and holds_slot(all) then
    -- Taken from a group's list, but the job already holds a group slot
    -- (it waits in a ready list or the delayed set, a retry or a
    -- hand-back): a copy a client pushed by hand. Claimed, it would hold
    -- this group's slot too, and its end would free only one of them.
    unhold(k)
  elseif bytes + size > budget and claimed > 0 then
    -- Over the byte budget: this id and the rest go back (below).
    over = o
    break
  else
    bytes = bytes + size
    -- A missing hash (an id pushed without a record) is claimed like any
    -- other: the worker dead-letters it as a malformed envelope.
    attempt = text(attempt + 1)
    -- The token grows by at least one per claim and is never below the
    -- claim's time (µs): after Redis restarts from an older AOF, or an
    -- async replica takes over, a job's counter may go back, but a new
    -- claim's token is still above every token handed out before (as long
    -- as Redis' clock does not go back), so a worker holding an old one
    -- can never ack the new attempt. Usually it is the claim's time, text
    -- already. (A token written by hand at 2^53 or more would not grow by
    -- one in Lua's numbers, and two claims would share it: the claim's
    -- time differs from it instead.)
    local token = (before < now or before >= 2 ^ 53) and now_s or text(before + 1)
    -- (The token is the claim's time, so no `claimed_us` is written: a
    -- field fewer per job, in Redis' time and in every record.)
    redis.call('HSET', key, 'token', token, 'attempt', attempt, 'status', 'running',
      'worker', worker)
    -- The group it was taken from is the one it holds (a record written
    -- by hand may lack the field: its slot must still be freed).
    if from_group then redis.call('HSET', key, 'group', from_group, 'group_held', '1') end
    lease_args[#lease_args + 1] = lease_until
    -- (lease_entry(token, id), inline: ~400 instructions a job fewer.)
    lease_args[#lease_args + 1] = id .. ' ' .. token
    if #lease_args >= 1000 then
      redis.call('ZADD', leased, unpack(lease_args))
      lease_args = {}
    end
    -- A token before this one names an earlier attempt: retried, handed
    -- back or lapsed (its entry gone with it), or still running where a
    -- client reused the id of a running job for a new one. The latter's
    -- entry goes now, or its late ack would find it and pass the fence.
    if before_text then stale[#stale + 1] = lease_entry(before_text, id) end
    -- And where a worker of the version before leases by id: its entry
    -- of the id, which that version's reaper would take for this attempt's.
    if has_leases then old_ids[#old_ids + 1] = id end
    claimed = claimed + 1
    local record = all
    -- (A fresh record Spool wrote has at most a dozen fields; one written
    -- by hand with many more is cut to its envelope too.)
    if marked or #all > 32 then
      record = {}
      for j = 1, #all, 2 do
        if ENVELOPE[all[j]] then
          record[#record + 1] = all[j]
          record[#record + 1] = all[j + 1]
        end
      end
    end
    -- The group whose slot it now holds, last: it wins over the record's
    -- own (which a record written by hand may lack).
    if from_group then
      record[#record + 1] = 'group'
      record[#record + 1] = from_group
    end
    jobs[#jobs + 1] = { id, token, attempt, marked and '0' or '1', record }
  end
end
if #lease_args > 0 then redis.call('ZADD', leased, unpack(lease_args)) end
for k = 1, #stale, 1000 do
  redis.call('ZREM', leased, unpack(stale, k, math.min(k + 999, #stale)))
end
for k = 1, #old_ids, 1000 do
  redis.call('ZREM', leases, unpack(old_ids, k, math.min(k + 999, #old_ids)))
end
-- Ids left for the budget go back untouched, last first, so that they are
-- popped again in the order they were: to the consuming end of their
-- ready list, or to the head of their group (freeing the slot they took).
local back_ready = 0
if over then
  out[5] = 1
  local back_group, back = false, {}
  for o = #ids, over, -1 do
    local k = order and order[o] or o
    if group_of[k] then
      unhold(k)
      into_group(ids[k], group_of[k], 'LPUSH')
      back_group = true
    else
      -- One RPUSH per list, below (a claim of 256 cut after one job puts
      -- 255 back).
      local list = list_of(runs, k)
      back[list] = back[list] or {}
      back[list][#back[list] + 1] = ids[k]
      back_ready = back_ready + 1
    end
  end
  for list, back_ids in pairs(back) do
    for from = 1, #back_ids, 1000 do
      redis.call('RPUSH', list, unpack(back_ids, from, math.min(from + 999, #back_ids)))
    end
  end
  -- The next claim's groups start after the last group this one kept a
  -- job of (where it would have been without the ids that went back).
  if back_group then
    local last = cursor_before
    for o = over - 1, 1, -1 do
      local g = group_of[order and order[o] or o]
      if g then last = g; break end
    end
    if last then redis.call('SET', P .. ':gcursor', last) else redis.call('DEL', P .. ':gcursor') end
  end
end
-- The 6:3:1 counter moves by the slots this claim kept.
if rr_moved - back_ready > 0 then
  redis.call('HINCRBY', P .. ':stats', 'rr', text(rr_moved - back_ready))
end
if rate > 0 then
  tokens = math.max(0, tokens - claimed)
  redis.call('HSET', bucket, 'tokens', tostring(tokens), 'at', now)
  -- Kept until it would be full again anyway (at least an hour).
  redis.call('PEXPIRE', bucket, math.max(3600000, math.ceil(burst * 3600000 / rate)))
end
flush_counts()
out[7] = cmsgpack.pack(jobs)

-- 6. Does the tenant still have claimable work? If not, it leaves the
-- queue's ready set, with a timer for the first moment something changes
-- by itself: a delayed job due, a lease expiring, the bucket refilling.
-- (No look when a pop emptied the only list with jobs and no id went
-- back to a list since, as at idle.)
local waiting
if drained and not over and not made_ready then waiting = false else waiting = has_waiting() end
local capped = cap > 0 and running() >= cap
local limited = rate > 0 and tokens < 1
if waiting and not paused and not capped and not limited then
  announce_ready()
  out[2] = announce_seq
  return with_pick(out, ARGV, now)
end
redis.call('DEL', P .. ':in')
local timer = false
-- The first of `key`'s scores, if any.
local function first_at(key)
  local head = redis.call('ZRANGE', key, '0', '0', 'WITHSCORES')
  return head[2] and tonumber(head[2])
end
-- (Nothing was delayed at the start, and only a lapse adds to it.)
if has_delayed or #expired > 0 or #expired_old > 0 then timer = earlier(timer, first_at(delayed)) end
if has_leased then
  timer = earlier(timer, first_at(leased))
elseif claimed > 0 then
  -- Nothing was leased before: this claim's leases, all until
  -- lease_until, are the first to expire.
  timer = earlier(timer, now + lease)
end
if has_leases then timer = earlier(timer, first_at(leases)) end
if waiting and limited and not paused then
  timer = earlier(timer, now + math.ceil((1 - tokens) * 3600000000 / rate))
end
-- At its cap with jobs waiting, the tenant comes back when an ack frees a
-- slot; but an ack skips that look when its worker's view of the limits
-- (under a second old) shows no cap (ack.lua, ARGV[5]). So a cap set
-- within that second, or lifted within it under a claim whose view
-- still had it, costs at most this long a wait, not a lease's (which
-- may be minutes). As long as the default lease: no more visits to a
-- capped tenant than its leases' timer made at the default.
if waiting and capped and not paused then timer = earlier(timer, now + CAP_LOOK_US) end
if timer then
  timer = math.max(timer, now + 1)
  redis.call('SET', P .. ':timer', timer)
  out[4] = timer
else
  redis.call('DEL', P .. ':timer')
end
local SETTLED = -2
-- On one server (the queue's prefix in KEYS[2]) the tenant leaves the
-- queue's ready set here, in the call that found it dry: no announcement
-- can come between the two, so no sequence number is needed, and the
-- caller has nothing to settle (SETTLED). (Refused, by a key of the
-- wrong type written by hand: the caller settles, as on a cluster.)
local tenant = queue_tenant()
if tenant and queue_write('ZREM', Q .. ':ready', tenant)
    and (not timer or queue_write('ZADD', Q .. ':timers', 'LT', text(timer), tenant)) then
  out[3] = SETTLED
else
  out[3] = tonumber(redis.call('HGET', P .. ':stats', 'seq') or 0) or 0
end
return with_pick(out, ARGV, now)
