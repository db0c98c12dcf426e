-- Enqueue one or many jobs of one tenant (one call per batch saves a script
-- call per job).
--
-- KEYS[1]  the tenant's prefix in the queue, e.g. `spool:{default/acme}`
-- KEYS[2]  (optional, not on a cluster) the queue's prefix, e.g.
--          `spool:{default}`: the script announces the tenant there itself
--          (see announce_in_queue in lib.lua) and returns nothing to announce
-- KEYS[3]  (optional, with KEYS[2]) the queue's idle workers, `Q:idle`: the
--          caller's view of the tenant's limits shows no concurrency cap
--          and no rate, so a lone job may be handed over to an idle worker
--          (see hand_over below)
-- KEYS[4]  (optional, with KEYS[3]) the flag `Q:on:MEMBER` of the waiter
--          the caller's last hand-over chose: while it stands, that waiter
--          is taken without reading `Q:idle` (see hand_over below)
-- ARGV[1]  idempotency key TTL in seconds
-- ARGV[2]  the tenant's max-payload quota, bytes (0: none)
-- ARGV[3]  the tenant's max-attempts quota (0: none)
-- ARGV[4]  Redis' clock as the caller knows it (µs; '': read TIME), as a
--          reading an earlier enqueue's reply gave plus the time since
--          (queue/clock.rs): a command fewer per call
-- then one group of arguments per job:
--   id, opts, [idempotency key ('' for none), delay µs (0 = now, on
--   Redis' clock), priority (high | normal | low), group ('' for none)],
--   n, plugin, payload, field, value, ... (n more pairs of the envelope:
--   content_type, max_attempts, wait, no_cache)
--   opts '' stands for no key, due now, priority normal and no group, and
--   the four bracketed values are left out; any other opts, they follow.
--   (Each argument costs Redis ~1,000 instructions to read and hand to
--   Lua, and most jobs are plain: 5 arguments a job, not 12;
--   docs/performance.md, "Fewer arguments per job".)
--
-- Returns {announce_seq, timer_us, ready, clock, id, created, id, created,
-- ...}: what the caller announces in the queue's slot (see "has work" in
-- lib.lua); Redis' clock as the call read it with TIME, µs (0 when it used
-- ARGV[4]: no new reading). created is 0 when the idempotency key already
-- named a job, whose id is returned instead. A payload over its tenant's
-- max-payload fails the whole call before anything is stored, with the
-- error `QUOTA <job index from 0> max-payload <bytes> <quota>`; a
-- max_attempts over the tenant's max-attempts is lowered to it. A job
-- handed over returns {announce_seq, timer_us, ready, clock, id, 1, flag}:
-- `flag` is the flag key of the waiter it went to, for the caller to send
-- as KEYS[4] next time ('' when that is the one it sent; '-' to send none:
-- see hand_over).
--
-- A job of a group goes to the tail of its group's list (claims release
-- the head of each group in turn); any other job to its priority's ready
-- list.

-- Made once, when the library loads (queue/scripts.rs): constants, and
-- functions that need nothing of one call.

-- One job's arguments from ARGV[i] on (see the header): its id, key,
-- delay, priority, group, where its plugin is (the payload follows, then
-- the other pairs up to `last`), and `last`.
local SMALL = { ['0'] = 0, ['1'] = 1, ['2'] = 2, ['3'] = 3, ['4'] = 4 }
local function job_at(argv, i)
  local opts, at = argv[i + 1], i + 2
  local idem, delay, priority, group = '', 0, 'normal', ''
  if opts ~= '' then
    idem, delay, priority, group = argv[at], tonumber(argv[at + 1]), argv[at + 2], argv[at + 3]
    at = at + 4
  end
  local n = argv[at]
  n = SMALL[n] or tonumber(n)
  return argv[i], idem, delay, priority, group, at + 1, at + 2 + n * 2
end

-- Hand the call's one job to an idle worker, as its claim would have
-- leased it (docs/queue.md, "Hand-over at idle"): at idle a job otherwise
-- costs an announcement, a wake-up and a claim that settles its tenant,
-- about 17 commands, where this costs 6. Only when nothing could come
-- before it: one job, due now, of no group, without an idempotency key, a
-- new id, and nothing of its tenant waiting, delayed, paused or
-- announced, and no tenant in the queue's ready set (fair share and
-- priorities have nothing to choose then). Jobs of the tenant may be
-- running: a running job waits for nothing. (A cap just set, which the
-- caller's view of the limits does not show yet, may be passed by the
-- lone jobs enqueued meanwhile; a claim whose view is as old may take a
-- batch past it: docs/queue.md, "Hand-over at idle".) A worker waiting for work
-- registers in `Q:idle` (queue/wake.rs, queue/idle.rs) as "INBOX
-- pLEASE_US WORKER" under the time (µs, Redis' clock) until which the
-- entry stands; the newest is chosen, and its entry stays.
-- The job is written as a claim writes it (status running, token, attempt
-- 1, worker), leased with a timer at the lease's end, and pushed onto the
-- worker's inbox as `j` + MessagePack {tenant, now, {id, token, attempt,
-- fresh, record}} (a job of a claim's reply, queue/reply.rs). Returns
-- whether it did; false leaves everything to the normal path.
--
-- The look is one EXISTS that answers three questions by weight. It
-- names the record, `Q:ready` and IDLE_KEYS once each (eight keys: any
-- of them there stops the hand-over), `P:timer` TIMER_WEIGHT times (more
-- than those eight together) and `P:in` IN_WEIGHT times (more than all the
-- others together). So a count of IN_WEIGHT or more says the tenant is
-- announced: the second value returned says so, and the normal path then
-- need not try to announce it (`SET P:in NX`, which would find it set), a
-- command fewer per enqueue of a tenant with work, as at a few thousand
-- jobs a second. What is left, TIMER_WEIGHT or more, says a visit is
-- asked for already (see the timer below): no `GET` of it, a command
-- fewer per idle job.
--
-- A fourth question, with the caller's waiter flag (KEYS[4]): a waiter
-- whose entry stands keeps a flag `Q:on:MEMBER` beside it, set with the
-- entry (same expiry) and deleted when it leaves (queue/idle.rs). The
-- flag is named ON_WEIGHT times, more than all the others together: a
-- count of ON_WEIGHT or more says the waiter the caller chose last still
-- waits, and it is taken again without `ZRANGE Q:idle`, a command fewer
-- per idle job. The reply tells the caller the flag of a waiter found in
-- `Q:idle` (see the end of the script).
local IDLE_KEYS = { ':ready:high', ':ready:normal', ':ready:low', ':paused', ':groups',
  ':delayed' }
local TIMER_WEIGHT = #IDLE_KEYS + 3
local IN_WEIGHT = 2 * TIMER_WEIGHT
local ON_WEIGHT = 2 * IN_WEIGHT
local LATE_US = 20000
local FAR_US = 60000000
local UNREAD = 16
local FLAG_UNREAD = 3
-- The newest waiter in `Q:idle` (its deadline the furthest on), or nil.
local function newest_waiter(idle, now)
  local newest = redis.pcall('ZRANGE', idle, '-1', '-1', 'WITHSCORES')
  if type(newest) ~= 'table' or not newest[2] then return nil end
  local member = newest[1]
  -- (A waiter within LATE_US of its deadline counts as gone: `now` may be
  -- the caller's reading, behind Redis' clock by up to a round trip. The
  -- newest gone, all are: their entries go.)
  local deadline = tonumber(newest[2])
  if deadline < now + LATE_US then
    redis.pcall('ZREMRANGEBYSCORE', idle, '-inf', '(' .. text(now + LATE_US))
    return nil
  end
  -- (A deadline a minute on or more, far past what any registration makes
  -- (two seconds), comes of a clock far off or an entry written by hand:
  -- it would stay the newest for that long. It goes.)
  if deadline > now + FAR_US then
    redis.pcall('ZREM', idle, member)
    return nil
  end
  return member
end

-- Push `entry` (a job handed over) onto the inbox of the waiter whose
-- `Q:idle` entry is `member`: its inbox, style, lease, worker and the
-- inbox's length after the push; nil when it cannot take the job, which
-- then goes the normal way.
local function push_to(idle, member, entry)
  -- A waiter that cannot take the job leaves `Q:idle`, and its flag goes
  -- with it.
  local function drop()
    redis.pcall('ZREM', idle, member)
    redis.pcall('DEL', Q .. ':on:' .. member)
  end
  -- `p` before the lease: a worker whose entry stands until it leaves
  -- `Q:idle` or its deadline passes, however many jobs it is handed
  -- (queue/idle.rs), and that renews and acks its lease as an entry of
  -- `P:leased` (lib.lua's lease_entry). `h`: the same lease, but the
  -- entry is one job's, taken by the enqueue that hands it one (a worker
  -- of the version before). Neither: a worker of the version before
  -- that, which renews the id's entry in `P:leases`. Versions before read
  -- no entry with `h` or `p`, take it, and hand nothing over.
  local inbox, style, lease, worker = member:match('^(%S+) ([hp]?)(%d+) (.+)$')
  -- (Only a worker's own list in the queue's slot: never another key.)
  if not inbox or inbox:sub(1, #Q + 6) ~= Q .. ':wake:' then
    drop()
    return nil
  end
  -- The push first: the only write here that a key of the wrong type can
  -- refuse (the others write keys that do not exist), and refused it
  -- leaves nothing behind but the waiter's entry, which goes: an inbox no
  -- one can push to takes no job (its worker registers a new one once its
  -- wait is cut off or its deadline comes; queue/idle.rs).
  local pushed = redis.pcall('RPUSH', inbox, entry)
  if type(pushed) ~= 'number' then
    drop()
    return nil
  end
  -- At most UNREAD jobs wait unread in an inbox: with that many there
  -- already (its worker has not read them yet: busy, full, stopped or
  -- killed), this one goes the normal way, taken back off the tail. So a
  -- worker killed while registered leaves at most that many jobs to
  -- their leases (as one killed with jobs claimed ahead leaves those),
  -- not every job enqueued until its deadline; a full or stopped one
  -- hands back what it finds when it leaves. Sixteen: with two, at a few
  -- thousand jobs a second a worker reading one job a round trip fell
  -- behind often, and each job sent the normal way then had paid for a
  -- push and its undoing too (16 to 17 commands a job where the build
  -- before spent 13 to 14; docs/performance.md, "A registration that
  -- stands").
  if pushed > UNREAD then
    redis.call('RPOP', inbox)
    return nil
  end
  return inbox, style, lease, worker, pushed
end

local function hand_over(argv, idle, flag, now, now_s)
  local id, idem, delay, priority, group, first, last = job_at(argv, 5)
  if last ~= #argv or idem ~= '' or delay ~= 0 or group ~= '' then return false end
  local tenant = queue_tenant()
  if not tenant or not valid_utf8(id) then return false end
  local key = job_key(id)
  local on = Q .. ':on:'
  -- (Only a flag in the queue's slot that names an entry.)
  if flag and (flag:sub(1, #on) ~= on or #flag == #on) then flag = nil end
  local look = { key, Q .. ':ready' }
  for _, k in ipairs(IDLE_KEYS) do look[#look + 1] = P .. k end
  for _ = 1, TIMER_WEIGHT do look[#look + 1] = P .. ':timer' end
  for _ = 1, IN_WEIGHT do look[#look + 1] = P .. ':in' end
  for _ = 1, flag and ON_WEIGHT or 0 do look[#look + 1] = flag end
  local found = redis.call('EXISTS', unpack(look))
  local member
  if found >= ON_WEIGHT then
    found = found - ON_WEIGHT
    member = flag:sub(#on + 1)
  end
  if found >= IN_WEIGHT then return false, true end
  local asked = found >= TIMER_WEIGHT
  if asked then found = found - TIMER_WEIGHT end
  if found > 0 then return false end
  local chosen = member
  member = member or newest_waiter(idle, now)
  if not member then return false end
  if priority == 'normal' or not PRIORITIES[priority] then priority = false end
  local record = { 'enqueued_us', now_s, 'plugin', argv[first], 'payload', argv[first + 1],
    unpack(argv, first + 2, last) }
  if priority then
    record[#record + 1] = 'priority'
    record[#record + 1] = priority
  end
  local entry = 'j' .. cmsgpack.pack({ tenant, now, { id, now_s, '1', '1', record } })
  local inbox, style, lease, worker, pushed = push_to(idle, member, entry)
  if not inbox then return false end
  -- The caller's waiter (by its flag) has not read the jobs before this
  -- one: a waiter that reads empties its inbox at each wait (queue/
  -- wake.rs), so this one may be dead, full or cut off. The job goes to
  -- the newest waiter in `Q:idle` instead, if that is another (taken
  -- back off this inbox's tail first), and the reply tells the caller to
  -- forget the flag (below). Decided here, not by the caller: calls sent
  -- with the flag before a reply said to forget it (a batch of many
  -- tenants' lone jobs, concurrent enqueues of one handle) take the
  -- newer waiter too.
  local switched = false
  if chosen and pushed >= FLAG_UNREAD then
    local newest = newest_waiter(idle, now)
    if newest and newest ~= member then
      local i, s, l, w, p = push_to(idle, newest, entry)
      if i then
        redis.call('RPOP', inbox)
        inbox, style, lease, worker, pushed, member, chosen = i, s, l, w, p, newest, nil
        -- (A waiter of the version before keeps no flag: the caller
        -- forgets the one it sent.)
        if style ~= 'p' then switched = true end
      end
    end
  end
  if style ~= 'p' then redis.call('ZREM', idle, member) end
  redis.call('HSET', key, 'enqueued_us', now_s, 'status', 'running', 'token', now_s,
    'attempt', '1', 'worker', worker, 'plugin', argv[first], 'payload', argv[first + 1],
    unpack(argv, first + 2, last))
  if priority then redis.call('HSET', key, 'priority', priority) end
  local until_s = text(now + tonumber(lease))
  if style ~= '' then
    redis.call('ZADD', P .. ':leased', until_s, lease_entry(now_s, id))
  else
    redis.call('ZADD', P .. ':leases', until_s, id)
  end
  -- The lease's end is the tenant's timer, as a claim that left it dry
  -- sets it (claim.lua, step 6): a lapse is reaped on time. Unless a
  -- visit is asked for already (the look found `T:timer`): `T:timer` set
  -- means the visit is in `Q:timers` (as ask_timer in lib.lua assumes),
  -- and that visit finds this lease and asks for its end (claim.lua,
  -- step 6). Such a tenant is named in `Q:seq` already (whatever set its
  -- timer named it, and nothing takes a tenant out): only a tenant's
  -- first hand-over names it. Three commands fewer per idle job than
  -- setting it each time. At idle that visit is the previous job's lease
  -- end, no later than this one's when the workers' leases are alike (or
  -- it is due already, and a claim's pick brings it). It may be later:
  -- a worker with a longer `--lease` leased the job before, or a timer
  -- for a limit since lifted. Then a lapse of this lease is reaped at
  -- that visit or at the sweep's look at every tenant outside the ready
  -- set (every SWEEP_EVERY, 10 s, worker/sweeper.rs), whichever comes
  -- first: that much late at most. (So it is where the caller makes the
  -- queue's write and it is lost: `T:timer` then names a visit
  -- `Q:timers` lacks.) docs/queue.md, "Hand-over at idle".
  if not asked then
    redis.call('SET', P .. ':timer', until_s)
    queue_write('ZADD', Q .. ':timers', 'LT', until_s, tenant)
    queue_write('ZADD', Q .. ':seq', 'NX', '0', tenant)
  end
  -- An inbox registered in `Q:inboxes` (`Q:wake:r:…`) is deleted by a
  -- worker once its waiter is gone (ring/reap.lua); one of a worker before
  -- that (a rolling upgrade) expires, as a worker killed now would leave
  -- it, and the job's copy in it, for good.
  if inbox:sub(#Q + 7, #Q + 8) ~= 'r:' then redis.call('PEXPIRE', inbox, '60000') end
  -- The flag of a standing entry found in `Q:idle`, for the caller's next
  -- hand-over; '' when the caller's own was taken (or the entry keeps no
  -- flag); '-' when jobs wait unread in the inbox or the job went to a
  -- waiter without a flag (see the switch above): the caller's next job
  -- looks in `Q:idle` again.
  if pushed >= FLAG_UNREAD or switched then return true, false, '-' end
  return true, false, (not chosen and style == 'p') and (on .. member) or ''
end

--[[ per call ]]

-- Check every job against its tenant's quotas before storing any.
-- (Most tenants have neither: no loop over the jobs then.)
local max_payload, max_attempts = tonumber(ARGV[2]) or 0, tonumber(ARGV[3]) or 0
local i, index = 5, 0
while (max_payload > 0 or max_attempts > 0) and i <= #ARGV do
  local _, _, _, _, _, first, last = job_at(ARGV, i)
  local payload = ARGV[first + 1]
  if max_payload > 0 and #payload > max_payload then
    return redis.error_reply('QUOTA ' .. index .. ' max-payload ' .. #payload .. ' ' .. max_payload)
  end
  for j = first + 2, max_attempts > 0 and last or 0, 2 do
    if ARGV[j] == 'max_attempts' and (tonumber(ARGV[j + 1]) or 0) > max_attempts then
      ARGV[j + 1] = tostring(max_attempts)
    end
  end
  i = last + 1
  index = index + 1
end

local now = now_from(ARGV[4])
local now_s = text(now)
-- The reply's reading of Redis' clock: one that TIME gave, not the one
-- sent (which, sent back, would fall behind by a trip each time).
local out = { now == tonumber(ARGV[4]) and 0 or now }
-- Announced once per call, not per job: any job ready now, and the first
-- delayed one's time.
local ready, first_due = false, false
-- The ids for each ready list (by priority), in order, pushed in one LPUSH
-- per list at the end of the call (all but each list's first): a command
-- per job cost Redis ~0.6 µs per job, most of it propagating the command
-- to the AOF and replicas.
local pushes, order = {}, {}
-- Whether an idempotency key named a stored job (see the end).
local repeated = false
-- Queue `id` in ready list `priority`, pushed in one LPUSH per list at
-- the end of the call, but for the list's first id: that one is pushed
-- at once, so that a list of the wrong type stops the call here, and the
-- push of the others at the end cannot fail.
local function queue_ready(priority, id)
  local ids = pushes[priority]
  if ids then
    ids[#ids + 1] = id
    return
  end
  local list = ready_key(priority)
  local r = redis.pcall('LPUSH', list, id)
  if type(r) == 'table' and r.err then
    if tostring(r.err):find('WRONGTYPE', 1, true) then
      error({ err = 'WRONGTYPE ' .. list .. ' is not a list' })
    end
    error(r)
  end
  pushes[priority] = {}
  order[#order + 1] = priority
end

-- Each job's writes that a key of the wrong type (written by hand) can
-- refuse come first, its record after them, its idempotency key last: a
-- job whose write is refused leaves no record that no list names. (If
-- its group's list took the id and a group index refused it, the id is
-- left without a record: its worker dead-letters it as a malformed
-- envelope.)
-- One job at ARGV[i], whatever its options; the index of the next.
local function store_one(i)
  local id, idem, delay, priority, group, first, last = job_at(ARGV, i)
  local existing, ikey = false, false
  if idem ~= '' then
    -- The key names the first job while that job's record lives: for the
    -- record TTL plus the job's delay, and never a job that is gone
    -- (purged, or dropped from the capped dead letters).
    ikey = P .. ':idem:' .. idem
    -- A key of the wrong type (written by hand) names no job; the SET
    -- below replaces it.
    existing = redis.pcall('GET', ikey)
    if type(existing) == 'table' then existing = false end
    if existing and redis.call('EXISTS', job_key(existing)) == 0 then existing = false end
  end
  if existing then
    repeated = true
    out[#out + 1] = existing
    out[#out + 1] = 0
  else
    local key = job_key(id)
    local run_at = now + delay
    if run_at > now then
      redis.call('ZADD', P .. ':delayed', run_at, id)
      if not first_due or run_at < first_due then first_due = run_at end
    elseif group ~= '' then
      into_group(id, group, 'RPUSH')
      ready = true
    else
      if not PRIORITIES[priority] then priority = 'normal' end
      queue_ready(priority, id)
      ready = true
    end
    -- The envelope's fields last, unpacked from ARGV (no copy): the script's
    -- caller sends only the names the header lists.
    if run_at > now then
      redis.call('HSET', key, 'enqueued_us', now_s, 'status', 'delayed', 'run_at_us',
        text(run_at), 'plugin', ARGV[first], 'payload', ARGV[first + 1], unpack(ARGV, first + 2, last))
    else
      redis.call('HSET', key, 'enqueued_us', now_s, 'status', 'queued', 'plugin', ARGV[first],
        'payload', ARGV[first + 1], unpack(ARGV, first + 2, last))
    end
    -- `normal`, the default, is left out (a smaller record stays a
    -- listpack); every reader takes a missing priority for it.
    if priority ~= 'normal' and group ~= '' then
      redis.call('HSET', key, 'priority', priority, 'group', group)
    elseif priority ~= 'normal' then
      redis.call('HSET', key, 'priority', priority)
    elseif group ~= '' then
      redis.call('HSET', key, 'group', group)
    end
    if ikey then
      -- The key deduplicates while this record lives: `idem` keeps the
      -- record out of the succeeded-record cap (ack.lua), for its TTL.
      redis.call('HSET', key, 'idem', '1')
      -- (At most MAX_TTL: a larger one would fail after the job is
      -- stored.)
      local ttl = tonumber(ARGV[1]) + math.floor(delay / 1000000)
      redis.call('SET', ikey, id, 'EX', math.max(1, math.min(ttl, MAX_TTL)))
    end
    out[#out + 1] = id
    out[#out + 1] = 1
  end
  return last + 1
end

-- Every job of the call. A plain one (`opts` '': no key, due now,
-- priority normal, no group; nearly every job) is stored here, as
-- store_one would, without its calls and lookups (~2,500 of an enqueue's
-- ~30,000 instructions a job; docs/performance.md, "A leaner common
-- path").
local function store()
  local i = 5
  while i <= #ARGV do
    if ARGV[i + 1] == '' then
      local id, n = ARGV[i], ARGV[i + 2]
      n = SMALL[n] or tonumber(n)
      local last = i + 4 + n * 2
      local ids = pushes.normal
      if ids then ids[#ids + 1] = id else queue_ready('normal', id) end
      ready = true
      redis.call('HSET', JOB_PREFIX .. id, 'enqueued_us', now_s, 'status', 'queued',
        'plugin', ARGV[i + 3], 'payload', ARGV[i + 4], unpack(ARGV, i + 5, last))
      out[#out + 1] = id
      out[#out + 1] = 1
      i = last + 1
    else
      i = store_one(i)
    end
  end
end

local handed, announced_already, flag = false, false, ''
if KEYS[3] and Q then
  handed, announced_already, flag = hand_over(ARGV, KEYS[3], KEYS[4], now, now_s)
end
-- A job handed over: its reply ends with the waiter's flag (see
-- hand_over), an odd count after the clock where the others have pairs.
if handed then return announced({ out[1], ARGV[5], 1, flag }) end

-- A job's bad key stops the call part way: the jobs stored before it are
-- pushed all the same, so that none is left stored, and named by its
-- idempotency key, but in no list.
local stored, failure = pcall(store)
for _, priority in ipairs(order) do
  local ids = pushes[priority]
  -- (LPUSH pushes its ids in turn: after the first, in enqueue order.)
  for k = 1, #ids, 1000 do
    redis.call('LPUSH', ready_key(priority), unpack(ids, k, math.min(k + 999, #ids)))
  end
end
local function announce()
  if ready and not announced_already then announce_ready() end
  if first_due then ask_timer(first_due) end
end
if not stored then
  -- On one server the jobs stored before the error are announced here.
  -- Otherwise (on a cluster, or if the queue's slot refused it) `P:in` and
  -- the timer are cleared, so that the next enqueue announces the tenant
  -- again; the caller nudges it meanwhile.
  local done = Q and pcall(function()
    announce()
    announced({})
  end)
  if not done or announce_seq > 0 or announce_now == 1 or announce_timer > 0 then
    redis.pcall('DEL', P .. ':in', P .. ':timer')
  end
  return redis.error_reply(error_text(failure))
end
announce()
-- A key that named a stored job: this may be the retry of a call whose
-- reply was lost after it set `P:in` and took a sequence number, but
-- before its announcement reached the queue's slot (on a cluster, where
-- that is the caller's second call). The caller then announces the
-- tenant under the number taken last, not under none: a claim's removal
-- decided before the lost call cannot undo it, and the job does not wait
-- for the sweep.
if repeated and not Q and announce_seq == 0 then
  announce_seq = tonumber(redis.call('HGET', P .. ':stats', 'seq')) or 0
  announce_now = 1
end
return announced(out)
