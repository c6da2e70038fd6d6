-- wake.lua: the timer shard's side of the protocol, prepended to every
-- script that touches a shard. Everything here touches only keys of one
-- shard (`<prefix>:timers:{<n>}`, `:later:{<n>}…`, `:events:{<n>}`), so on a
-- Redis Cluster it runs as a call of its own, after (or, for a new cascade,
-- before) the call on the cascade's own keys; on one Redis the two run as
-- one script (parts.lua).
--
-- A score in the shard's sorted set says what waits there, by its fraction:
--   whole ms   a wake-up
--   .25        a wake-up a receipt asked for at once (`<now - 1>.25`, so
--              it is claimable at `now`)
--   .5         a claim's lease: `<end ms>.5` (claim.lua)
--   .75        a lease during which a receipt (or a new cascade with the
--              same id) asked for a wake-up: its holder wakes the cascade at
--              once when it stores what it did (settle), instead of at the
--              wake-up its decision chose
-- The marks make the order of the two calls safe on a cluster: a receipt
-- recorded after the holder read the receipts, but before it set the timer,
-- is not lost under the holder's later wake-up.

-- Is `score` (as ZSCORE or WITHSCORES give it; false when not in the set)
-- a claim's lease?
local function is_lease(score)
  if not score then
    return false
  end
  local s = tonumber(score)
  return s - math.floor(s) >= 0.5
end

-- Was a wake-up asked for at once while this score was in place?
local function is_poked(score)
  if not score then
    return false
  end
  local s = tonumber(score)
  local f = s - math.floor(s)
  return f == 0.25 or f == 0.75
end

-- A wake-up due within the horizon goes into the shard's sorted set, where
-- claim.lua takes it. One further off goes to the list of its slot (a
-- minute), as "<due ms> <id>", and the slot into the shard's index of slots;
-- claim.lua moves a slot's list into the sorted set shortly before it comes
-- due. Most cascades wait far ahead (30 minutes, a day), and a list entry
-- costs Redis about a third of a sorted-set entry.
-- timers: the shard's sorted set   later: its index of slots (a sorted set)
-- slot_list: the list of the slot `due` falls in (built by the caller, who
-- computes the slot as floor(due / slot_ms), as here)
-- far_after: now + horizon, ms     slot_ms: the length of a slot
local function set_wake(timers, later, slot_list, id, due, far_after, slot_ms)
  if tonumber(due) > tonumber(far_after) then
    local slot = math.floor(tonumber(due) / tonumber(slot_ms))
    -- Out of the set, or its lease there would wake it early.
    redis.call('ZREM', timers, id)
    redis.call('RPUSH', slot_list, due .. ' ' .. id)
    redis.call('ZADD', later, slot, slot)
  else
    redis.call('ZADD', timers, due, id)
  end
end

-- Asks for a wake-up at once: a lease gets the .75 mark (its holder may be
-- sending on it: a second claim now could send the same step again), any
-- other score becomes `<now - 1>.25`.
local function poke(timers, id, now, score)
  if is_lease(score) then
    redis.call('ZADD', timers, 'XX', math.floor(tonumber(score)) + 0.75, id)
  else
    redis.call('ZADD', timers, tonumber(now) - 0.75, id)
  end
end

-- One stream entry per decision, its timeline entries one per line.
local function append_events(stream, id, entries, max_len)
  if entries ~= '' then
    redis.call('XADD', stream, 'MAXLEN', '~', max_len, '*', 'id', id, 'e', entries)
  end
end

-- arm: the timer of a cascade about to be recorded (accept). Runs before
-- the record is written, so a crash in between leaves a timer without a
-- record (the claim finds none and forgets it), never a record without a
-- timer. An id already in the set keeps its score (a duplicate's running
-- cascade), but a lease is marked and a later wake-up brought forward:
-- at worst the cascade wakes early and puts its timer back.
-- k: timers, later, slot list    a: id, due ms, now + horizon, slot ms
local function arm(k, a)
  local id, due = a[1], a[2]
  local score = redis.call('ZSCORE', k[1], id)
  if is_lease(score) then
    poke(k[1], id, 0, score)
  elseif score then
    if tonumber(due) <= tonumber(a[3]) then
      redis.call('ZADD', k[1], 'LT', due, id)
    end
  else
    set_wake(k[1], k[2], k[3], id, due, a[3], a[4])
  end
  return { 'armed' }
end

-- settle: the timer after a decision was stored on the cascade's keys
-- (commit, touch), and the decision's stream entry. A wake-up asked for
-- since the claim (a mark) is honoured at once. Another claim's lease is
-- left alone: the cascade is that claim's holder's now, who sets the timer
-- (on a cluster a writer that stalled between its record and this call
-- must not hand the cascade to a third claim while that holder sends).
-- k: timers, later, slot list, events stream
-- a: due ms or "" when finished, now ms, now + horizon, slot ms, id,
--    the timeline entries ("" for none), the stream's max length, the end
--    of the claim's lease the decision was made under ("" for none)
local function settle(k, a)
  local due, id = a[1], a[5]
  local score = redis.call('ZSCORE', k[1], id)
  if is_lease(score) and (a[8] == '' or math.floor(tonumber(score)) ~= tonumber(a[8])) then
    append_events(k[4], id, a[6], a[7])
    return { 'not_mine' }
  end
  if due == '' then
    redis.call('ZREM', k[1], id)
  else
    if is_poked(score) then
      due = a[2]
    end
    set_wake(k[1], k[2], k[3], id, due, a[3], a[4])
  end
  append_events(k[4], id, a[6], a[7])
  return { 'settled' }
end

-- woken: a receipt was recorded on the cascade's keys; wake the cascade so
-- it decides at once (poke), and append the receipt's stream entry.
-- k: timers, events stream   a: id, now ms, timeline entry, stream max length
local function woken(k, a)
  poke(k[1], a[1], a[2], redis.call('ZSCORE', k[1], a[1]))
  append_events(k[2], a[1], a[3], a[4])
  return { 'woken' }
end
