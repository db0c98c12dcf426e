-- Record the outcomes of finished attempts, many jobs per call.
--
-- KEYS[1]  the tenant's prefix in the queue
-- ARGV[1]  record TTL, seconds
-- ARGV[2]  dead-letter record TTL, seconds
-- ARGV[3]  dead-letter cap
-- ARGV[4]  succeeded records kept (0: no count cap, the TTL alone): the
--          newest, in the order their acks came, in `P:recent`; older
--          ones are deleted
-- ARGV[5]  '1' when the worker's view of the tenant's limits (read by its
--          claims once a second) shows no concurrency cap: a freed lease
--          then cannot make it claimable, and the ack does not look (see
--          the end; a view that missed a cap just set costs the tenant
--          claim.lua's CAP_LOOK_US at most)
-- ARGV[6]  Redis' clock (µs) as the worker reads it from its claims, or
--          '': the time of the outcomes (`finished_us`, TTLs). Sent only
--          when every outcome is a success (a retry's due time or a dead
--          letter's place are read from TIME), so that no ack calls TIME
--          at idle (lib.lua, now_from)
-- ARGV[7]  '1': refresh the expiry of the tenant's kept list (see
--          keep_newest), whether or not this call adds to it
-- ARGV[8]  the worker's lease, µs ('' or 0: RESTORE_US): how long a job
--          keeps the lease it gets back when a write refuses this call
--          part-way (see restore_leases)
-- then one group per job:
--   id, token, head, [delay_us,] field, value, ... (nfields pairs)
-- head: one text for four values (each argument costs Redis ~1,000
--   instructions to read and hand to Lua; docs/performance.md, "Fewer
--   arguments per job"): the outcome's letter (s succeeded, r retrying,
--   d dead, q requeue, w wedged), wait ('1' when a client waits for the
--   result), plain, then nfields in decimal: `s016`. delay_us follows
--   only for r, q and w.
-- plain: '1' when the worker's claim saw neither a `group` nor an `idem`
--   field in the record (neither changes while a job runs): the ack then
--   does not look for them (a field the record lacks costs a pass over
--   all of it). Anything else: they are read from the record.
-- outcome: succeeded | retrying | dead | requeue | wedged
--   retrying: back to the delayed set for delay_us (backoff)
--   requeue:  handed back without spending an attempt (shutdown, or the plugin
--             is not loaded here); delayed for delay_us when it is not 0
--   wedged:   the worker's watchdog gave up on the job thread: handled like
--             an expired lease (lapse() in lib.lua), delay_us the backoff
--             base; the group's fields are ignored
-- Delays are relative, so due times are on Redis' clock, not the worker's.
--
-- Fencing: the token changes only when an attempt is claimed, so an outcome
-- is applied only under the job's current token. Normally the job is then
-- `running` (and `wedged` applies only then; `requeue` also to an attempt
-- whose lease lapsed, see handed_back). If the worker's lease expired (it lost Redis for a while) but
-- no newer attempt was claimed yet, the job is `delayed` (backing off), or
-- `queued`, or `dead` if that was its last attempt: the outcome still wins,
-- and the job is taken back out of the delayed set, its ready list or the
-- dead letters. Once a newer attempt was
-- claimed, or the job was retried from the dead letters (dead_retry.lua),
-- the token differs and the outcome is refused (0).
--
-- Returns {announce_seq, timer_us, ready, then one 1 (applied), 2 (applied
-- by an earlier call: this one repeats it) or 0 (stale) per group, in
-- order}: the caller announces the tenant as they
-- say (a lease freed a slot under the tenant's cap, a job went
-- back to a ready list, a group's slot was freed; see "has work" in
-- lib.lua).
--
-- Groups: a job of a group holds its group's slot from its claim until it
-- succeeds or dies; a retry, a hand-back or an expired lease keeps it, so
-- the group's next job does not start before it (docs/queue.md, "Groups").

-- Made once, when the library loads (queue/scripts.rs): constants, and
-- functions that need nothing of one call.

-- Whether a late outcome under `token` may still apply to the job, not
-- running: its `error` is a lapse's (lib.lua, lapse()), or its worker
-- handed it back under this token (`requeued_token`).
local LAPSES = { '"kind":"lease-expired"', '"kind":"worker-crash"', '"kind":"wedged"' }
local function late_allowed(key, token)
  local f = redis.call('HMGET', key, 'error', 'requeued_token')
  if f[2] == token then return true end
  if not f[1] then return false end
  for _, kind in ipairs(LAPSES) do
    if f[1]:find(kind, 1, true) then return true end
  end
  return false
end

-- Whether the outcome for `key` (under `token`) may be applied: the
-- job's {token, status, group, idem} if so; only the first two for a
-- `plain` job (see the header), the others nil. (Few fields: an ack reads
-- no more than it needs, every read field costs Redis time per job.)
local function current_attempt(id, key, token, plain)
  local f
  if plain == '1' then
    f = hmget(key, 'token', 'status')
  else
    f = hmget(key, 'token', 'status', 'group', 'idem')
  end
  if not f or f[1] ~= token then return nil end
  if f[2] == 'running' then return f end
  -- Not running under this token: a lapse (an expired lease, or the
  -- watchdog's `wedged`) leaves a job so, with its `error`, or this
  -- worker's own hand-back (shutdown past its grace), with
  -- `requeued_token`; an applied outcome clears both (below). With
  -- neither, this outcome was applied already (an ack sent again after
  -- its reply was lost, or after a claim moved the retry along): not
  -- again.
  if not late_allowed(key, token) then return nil end
  if f[2] == 'queued'
      and redis.call('LREM', ready_key(redis.call('HGET', key, 'priority')), 1, id) == 1 then
    return f
  end
  if f[2] == 'delayed' and redis.call('ZREM', P .. ':delayed', id) == 1 then return f end
  if f[2] == 'dead' and redis.call('ZREM', P .. ':dead', id) == 1 then
    -- It was buried for its expired lease, and counted dead: not any more.
    redis.call('PERSIST', key)
    counts['dead'] = (counts['dead'] or 0) - 1
    return f
  end
  return nil
end

-- A hand-back applies to a running attempt, or to one whose lease lapsed
-- while its worker still held it (Redis was away longer than the lease):
-- the job did not run to an end there, so the lapse's count is undone. A
-- hand-back already applied (sent again after its reply was lost) is not
-- applied twice: it left `requeued_token`.
local function handed_back(id, key, token)
  local f = hmget(key, 'token', 'status', 'group', 'requeued_token', 'lease_expiries')
  if not f or f[1] ~= token then return nil end
  if f[2] == 'running' then return f end
  if f[4] == token then return nil end
  local current = current_attempt(id, key, token)
  if current then
    redis.call('HSET', key, 'lease_expiries', math.max(0, int(f[5]) - 1))
  end
  return current
end

-- Record `ids` (this call's successes, oldest first) in `P:recent`,
-- newest at the head, and delete the records of the oldest beyond `keep`,
-- so that a busy tenant's succeeded records take bounded memory whatever
-- the TTL. The list is also the tenant's count of them: each entry is a
-- success not yet added to `succeeded` in `P:stats`, which a trim adds
-- for the entries it takes, so the tenant's total is that field plus the
-- list's length (stats.lua), and an ack spends no `HINCRBY` on it (a
-- command per idle job). A quiet tenant's list is folded into the field
-- a day after its records expired, well before the list does (fold.lua,
-- queue/fold.rs). (Workers before
-- 2026-12-05 push onto `P:kept` and count each success in the field:
-- this list is a key of its own so that neither counts the other's.) Only records still succeeded are deleted: an id a client reused
-- for a new job keeps it while that job is live. (Once the reused id
-- succeeds again it is listed twice, and its record goes when the older
-- entry does: checking each entry's token as well cost ~6% of Redis'
-- time per job, for ids no Spool client reuses.) Records someone may come
-- back for are never listed (see the caller): they live for the TTL. (A
-- list, not a sorted set: pushing and popping ids is a fraction of a
-- skiplist's cost, and acks come in finish order anyway.)
--
-- The list is trimmed in batches (`slack` below): past the cap it grows
-- by a tenth of it (at most 100) before one `SORT … GET` reads the status
-- of the entries past the cap, one `LTRIM` takes it back to the cap and
-- one `DEL` deletes the records still succeeded. Trimming at every ack cost an
-- idle job three commands (`EXPIRE`, `RPOP`, `DEL`); batched, a
-- hundredth of that, and the cap holds within its slack.
-- The list's expiry (the TTL and KEPT_MARGIN_S) is set when a push makes
-- it, and raised, never lowered, at each trim and when the worker asks
-- (ARGV[7]: a worker asks once a minute, with a call that lists a
-- success, see `kept_refresh` in queue/ops.rs, which checks the margin
-- covers that): so the list outlives every record it lists, by the
-- margin past the longest TTL of the workers acking it. (Never lowered:
-- a worker with a shorter --record-ttl must not cut the list's life short
-- of records a longer one wrote. A PTTL more, but only at a trim or a
-- refresh.)
-- (Thirty days, not the two minutes the records need: the list holds
-- counts, and a quiet tenant's is folded into its counter from a day
-- after its records expired (fold.lua, queue/fold.rs); its expiry only
-- bounds the ids of a tenant no worker serves any more. A fleet stopped
-- for the whole thirty days loses those counts.)
local KEPT_MARGIN_S = 2592000
local function kept_expiry(ttl) return math.min(int(ttl), MAX_TTL) + KEPT_MARGIN_S end
local function extend_kept(list, ttl)
  local want = kept_expiry(ttl) * 1000
  local left = redis.call('PTTL', list)
  -- (As text: some Redis versions print a round Lua number as 1e+08.)
  if left == -1 or (left >= 0 and left < want) then redis.call('PEXPIRE', list, text(want)) end
end
-- The records among the `n` oldest entries of `list` (of `length`) that
-- are still succeeded, as keys: one `SORT … GET` reads every entry's
-- status (a status read per entry was a command per job at the cap, at
-- any rate: docs/performance.md, "The enqueue's clock and the kept cap's
-- reads"). false where Redis refuses it: a cluster (Redis 7.0 denies
-- `GET` patterns there), an ACL user without read access to every key or
-- without `@dangerous` (Redis 7), or a prefix with a `*`, which the
-- pattern would take for the id's place; the caller then reads each
-- record. (`length - n` is at least the cap, so the entries kept are
-- never all of them.)
local function oldest_succeeded(list, length, n)
  if JOB_PREFIX:find('*', 1, true) then return false end
  local got = redis.pcall('SORT', list, 'BY', 'nosort', 'LIMIT', text(length - n), text(n),
    'GET', '#', 'GET', JOB_PREFIX .. '*->status')
  if type(got) ~= 'table' or got.err then return false end
  local gone = {}
  for k = 1, #got, 2 do
    if got[k + 1] == 'succeeded' then gone[#gone + 1] = job_key(got[k]) end
  end
  return gone
end
local function keep_newest(ids, keep, ttl)
  local list = P .. ':recent'
  local length = 0
  for k = 1, #ids, 1000 do
    local pushed = redis.pcall('LPUSH', list, unpack(ids, k, math.min(k + 999, #ids)))
    if type(pushed) ~= 'number' then
      -- A key of another type, written by hand: the ids go uncapped (they
      -- expire with their TTL), but counted in the field, not lost; and
      -- the key is left as it is (nil: no refresh of its expiry either).
      counts['succeeded'] = (counts['succeeded'] or 0) + #ids - k + 1
      return nil
    end
    length = pushed
  end
  local slack = math.max(1, math.min(100, math.floor(keep / 10)))
  local excess = length - keep
  if length == #ids then
    -- Made by this push.
    redis.call('EXPIRE', list, text(kept_expiry(ttl)))
    if excess < slack then return true end
  elseif excess < slack then
    return false
  else
    extend_kept(list, ttl)
  end
  -- At most 1,000 per call (an ack call adds at most 500), so that a
  -- lowered cap is reached over a few calls, never in one long script.
  local n = math.min(excess, 1000)
  local gone = oldest_succeeded(list, length, n)
  if gone then
    redis.call('LTRIM', list, 0, text(length - n - 1))
  else
    gone = {}
    for _, o in ipairs(redis.call('RPOP', list, text(n))) do
      local key = job_key(o)
      if redis.pcall('HGET', key, 'status') == 'succeeded' then gone[#gone + 1] = key end
    end
  end
  -- Each entry taken is a success, counted now in the field.
  counts['succeeded'] = (counts['succeeded'] or 0) + n
  -- One DEL for all (each command called from Lua costs more than
  -- deleting a small record).
  if #gone > 0 then redis.call('DEL', unpack(gone)) end
  return true
end

-- Whether `status` is what `outcome` leaves, to recognise an ack that is
-- sent again after its reply was lost (it was applied; it is not stale).
local LEAVES = { succeeded = { succeeded = true }, retrying = { retrying = true },
  dead = { dead = true }, requeue = { delayed = true, queued = true },
  wedged = { delayed = true, dead = true } }

-- A head (see the header) as {outcome, wait, plain, nfields, delayed},
-- read once and kept: the library's state lives between calls, and a
-- worker sends a few heads over and over. (Kept as they come rather than
-- made at load: under EVALSHA this part runs on every call, and making
-- all 640 there cost a one-job ack 12 times its time.) At most HEADS_MAX
-- are kept; Spool's workers send at most 260 (0 to 12 fields).
local OUTCOMES = { s = 'succeeded', r = 'retrying', d = 'dead', q = 'requeue', w = 'wedged' }
local DELAYED = { r = true, q = true, w = true }
local HEADS, HEADS_MAX, heads_kept = {}, 1000, 0
local function head_of(text)
  local h = HEADS[text]
  if h then return h end
  local letter, waiting, plain, n = tostring(text):match('^(%a)([01])([01])(%d+)$')
  if not OUTCOMES[letter] then
    error({ err = 'ERR ack: bad head ' .. tostring(text) .. ', expected e.g. s016' })
  end
  h = { OUTCOMES[letter], waiting, plain, tonumber(n), DELAYED[letter],
    letter == 's' and waiting == '0' and plain == '1' }
  if heads_kept < HEADS_MAX then
    HEADS[text] = h
    heads_kept = heads_kept + 1
  end
  return h
end

--[[ per call ]]
local record_ttl, dead_ttl, dead_cap = ARGV[1], ARGV[2], tonumber(ARGV[3])
local keep = tonumber(ARGV[4]) or 0
local uncapped = ARGV[5] == '1'
local now = now_from(ARGV[6])
local now_s = text(now)
local leased, leases = P .. ':leased', P .. ':leases'
local applied = {}
local released = {}

-- The fence, for the whole call at once: the lease entry of each group's
-- attempt (`ID TOKEN`, lib.lua's lease_entry) taken out of `P:leased`
-- before anything is written. An entry is there only while its attempt
-- holds the job, running (a claim or a hand-over adds it; this ack, a
-- lapse, a recovery or a later claim of the job takes it out). So when
-- every entry was there (`fenced`), a plain success is written without
-- reading its record first: a command fewer per job at every rate
-- (docs/performance.md, "The lease's entry as the fence"). When any was
-- missing (an ack sent again, a stale one, a lease that lapsed, a job
-- that a worker of the version before leased in `P:leases`), every group
-- is checked against its record, as before.
local entries, starts = {}, {}
do
  local g = 9
  while g <= #ARGV do
    starts[#starts + 1] = g
    local head = HEADS[ARGV[g + 2]] or head_of(ARGV[g + 2])
    -- (lease_entry(token, id), inline: ~400 instructions a job fewer.)
    entries[#entries + 1] = ARGV[g] .. ' ' .. ARGV[g + 1]
    g = g + 3 + (head[5] and 1 or 0) + head[4] * 2
  end
end
local removed = 0
for k = 1, #entries, 1000 do
  -- (A key of another type, written by hand, holds no entry: checked.)
  local r = redis.pcall('ZREM', leased, unpack(entries, k, math.min(k + 999, #entries)))
  if type(r) == 'number' then removed = removed + r end
end
local fenced = removed == #entries

-- Drop `id`'s lease: gone from `P:leased` already; from `P:leases` where
-- the fence did not hold (in batches: unpack has a limit).
local freed = false
local function release(id)
  freed = true
  if fenced then return end
  released[#released + 1] = id
  if #released >= 1000 then
    redis.call('ZREM', leases, unpack(released))
    released = {}
  end
end

-- This call's succeeded ids for `P:recent`, in order (counted there,
-- not in `P:stats`: see keep_newest).
local succeeded = {}

-- Any outcome of any job (the fast path below leaves the rest here):
-- apply the group at ARGV[i]; the index of the next group.
local function apply(i)
  local id, token, head = ARGV[i], ARGV[i + 1], head_of(ARGV[i + 2])
  local outcome, waiting, plain, nfields = head[1], head[2], head[3], head[4]
  local delay, first = 0, i + 3
  if head[5] then delay, first = int(ARGV[first]), first + 1 end
  local last = first - 1 + nfields * 2
  local key = job_key(id)
  local current
  if outcome == 'wedged' then
    -- Only a running attempt can be given up on: a job that already lapsed
    -- or finished, or an ack sent again, is left as it is (the LEAVES check
    -- below tells a repeat from a stale ack).
    local f = hmget(key, 'token', 'status')
    if f and f[1] == token and f[2] == 'running' then current = f end
  elseif outcome == 'requeue' then
    current = handed_back(id, key, token)
  else
    current = current_attempt(id, key, token, plain)
  end
  if current and outcome == 'wedged' then
    release(id)
    local f = hmget(key, unpack(LAPSE_FIELDS))
    lapse(id, f, now, delay, dead_ttl, dead_cap, 'wedged', function(who, attempt)
      return 'the job thread of worker ' .. who .. ' did not come back within the deadline'
        .. ' and grace of attempt ' .. attempt .. ' (wedged in a host call): the worker released the job'
    end)
    applied[#applied + 1] = 1
  elseif current then
    release(id)
    -- An attempt whose lease lapsed got the lapse's `error`; its worker
    -- clears only what it saw at the claim (nothing, on a fresh record).
    if current[2] ~= 'running' then redis.call('HDEL', key, 'error', 'requeued_token') end
    local run_at = now + delay
    -- A hand-back also needs {priority, attempt, group_held}.
    local more
    if outcome == 'succeeded' or (outcome == 'dead' and delay == 0) then
      -- The common case, without copying the worker's fields.
      redis.call('HSET', key, 'status', outcome, 'finished_us', now_s, unpack(ARGV, first, last))
    else
      local fields = { 'status', outcome, 'finished_us', now_s }
      for j = first, last do fields[#fields + 1] = ARGV[j] end
      if delay > 0 then
        fields[#fields + 1] = 'run_at_us'; fields[#fields + 1] = text(run_at)
      end
      if outcome == 'requeue' then
        more = hmget(key, 'priority', 'attempt', 'group_held')
        fields[2] = delay > 0 and 'delayed' or 'queued'
        fields[3] = 'requeued_us'
        fields[#fields + 1] = 'requeued_token'; fields[#fields + 1] = token
        fields[#fields + 1] = 'attempt'; fields[#fields + 1] = math.max(0, int(more[2]) - 1)
      end
      redis.call('HSET', key, unpack(fields))
    end
    if outcome == 'succeeded' then
      release_group(id, current[3])
      finish(id, 'succeeded', record_ttl, waiting, key)
      -- Not capped: a job a client waits for (`enqueue --wait` reads the
      -- record after the done notice), or one enqueued under an
      -- idempotency key (which deduplicates only while the record lives).
      if keep > 0 and waiting ~= '1' and not current[4] then
        succeeded[#succeeded + 1] = id
        counts['succeeded'] = counts['succeeded'] - 1
      end
    elseif outcome == 'dead' then
      bury(id, now, dead_ttl, dead_cap, waiting, current[3])
    elseif outcome == 'retrying' then
      redis.call('ZADD', P .. ':delayed', run_at, id)
      ask_timer(run_at)
      count('retried')
    elseif delay > 0 then
      redis.call('ZADD', P .. ':delayed', run_at, id)
      ask_timer(run_at)
    else
      make_ready(id, more[1], current[3], more[3])
    end
    applied[#applied + 1] = 1
  else
    local f = hmget(key, 'token', 'status')
    local again = f and f[1] == token and (LEAVES[outcome] or {})[f[2]] == true
    applied[#applied + 1] = again and 2 or 0
  end
  return last + 1
end

-- The common case inline: a success of a `plain` job no client waits
-- for, still running under the worker's token. It does what apply() does
-- for it, without the calls around it (a Lua function call, a table, a
-- lookup each: ~7,000 of an ack's ~72,000 instructions per job in
-- scripts/redis-cost.sh; docs/performance.md, "A leaner common path").
-- Under the fence (`fenced`, above) it runs under the token without a
-- look; else its record says so. Anything else, including a record that
-- is not a hash or no longer runs under the token (f[1] is then not the
-- token), goes to apply(), which reads the record again and decides.
local until_ms = deadline_ms(record_ttl)
local fast = 0
local function apply_all()
  local i = 9
  while i <= #ARGV do
    local head = HEADS[ARGV[i + 2]] or head_of(ARGV[i + 2])
    local next_i = i + 3 + head[4] * 2
    local done = false
    if head[6] then
      local id, key = ARGV[i], JOB_PREFIX .. ARGV[i]
      if fenced then
        -- (pcall: a record of another type, written by hand, fails this
        -- job alone, in apply(), and never the call half-way.)
        done = type(redis.pcall('HSET', key, 'status', 'succeeded', 'finished_us', now_s,
          unpack(ARGV, i + 3, next_i - 1))) == 'number'
      else
        local f = redis.pcall('HMGET', key, 'token', 'status')
        done = f[1] == ARGV[i + 1] and f[2] == 'running'
        if done then
          redis.call('HSET', key, 'status', 'succeeded', 'finished_us', now_s,
            unpack(ARGV, i + 3, next_i - 1))
        end
      end
      if done then
        release(id)
        redis.call('PEXPIREAT', key, until_ms)
        fast = fast + 1
        if keep > 0 then succeeded[#succeeded + 1] = id end
        applied[#applied + 1] = 1
      end
    end
    if done then i = next_i else i = apply(i) end
  end
end

-- A write refused part-way (a key of another type, written by hand: a
-- ready list, `T:delayed`, a done notice...) ends the call with an error,
-- after the fence took every entry out. The jobs from the one that
-- failed on whose attempt still holds them (running under the token, not
-- leased in `P:leases` by the version before) get their lease back, as
-- long as the worker's (ARGV[8]), as a heartbeat would renew it: the
-- worker acks them again one by one, and if it was killed meanwhile they
-- lapse as after any lease. (Without this they would stay `running` with
-- no lease at all.) What the failed one wrote stays, as before the fence.
-- Then what the call announced before the failure (a retry's timer)
-- goes out as at its end; where it cannot, `P:in` and `P:timer` are
-- cleared, so that the next script announces the tenant again (as an
-- enqueue's failure does).
local RESTORE_US = 10000000
local function restore_leases(from)
  local lease = tonumber(ARGV[8]) or 0
  local until_s = text(now + (lease > 0 and lease or RESTORE_US))
  for k = from, #starts do
    local g = starts[k]
    local id, token = ARGV[g], ARGV[g + 1]
    local f = hmget(job_key(id), 'token', 'status')
    if f and f[1] == token and f[2] == 'running'
        and type(redis.pcall('ZSCORE', leases, id)) ~= 'string' then
      redis.pcall('ZADD', leased, until_s, entries[k])
    end
  end
end
local ok, failure = pcall(apply_all)
if not ok then
  restore_leases(#applied + 1)
  local done = Q and pcall(function() announced({}) end)
  if not done or announce_seq > 0 or announce_now == 1 or announce_timer > 0 then
    redis.pcall('DEL', P .. ':in', P .. ':timer')
  end
  return redis.error_reply(error_text(failure))
end
-- (With a cap each is listed in `P:recent`, which counts it.)
if fast > 0 and keep == 0 then counts['succeeded'] = (counts['succeeded'] or 0) + fast end
if #released > 0 then redis.call('ZREM', leases, unpack(released)) end
local expiry_set = #succeeded > 0 and keep_newest(succeeded, keep, record_ttl)
-- The worker's once-a-minute refresh of the kept list's expiry (above).
if keep > 0 and ARGV[7] == '1' and expiry_set == false then
  extend_kept(P .. ':recent', record_ttl)
end
-- A freed lease may be a free slot under the tenant's cap: worth a visit if
-- jobs wait (a tenant that ran dry stays out of the ready set). Nothing to
-- do while the tenant is in the ready set (the common case under load).
-- (One look when the tenant is neither in nor has work, as at idle; none
-- for a tenant without a cap: what it waits for then is a rate's refill
-- or a delayed job, each with a timer, or a group's slot, released and
-- announced above.)
if freed and not uncapped and redis.call('EXISTS', P .. ':in', P .. ':ready:high', P .. ':ready:normal',
    P .. ':ready:low', P .. ':groups') > 0
    and redis.call('EXISTS', P .. ':in') == 0 and has_waiting() then
  announce_ready()
end
flush_counts()
return announced(applied)
