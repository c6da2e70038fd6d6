-- wake.lua: the timer shard's helpers, prepended to every script that
-- touches a shard (the shard's operations: arm.lua, settle.lua, woken.lua,
-- claim.lua, forget.lua, give_back.lua). They touch only keys of one shard
-- (`<prefix>:timers:{<n>}`, `:later:{<n>}…`, `:events:{<n>}`,
-- `:report:{<n>}:<hour>`), so on a Redis
-- Cluster a shard's part of an operation is a call of its own, after (or,
-- for a new cascade, before) the part on the cascade's own keys; on one
-- Redis the parts run as one script (*_whole.lua).
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

-- A decision's report counts (report/mod.rs), added to its hour's hash on
-- the shard: counts holds "<n> <field>" lines ("" for none). The hash is
-- kept until keep_until (ms: the hour's end plus the retention).
local function add_counts(report, counts, keep_until)
  if counts == '' then
    return
  end
  for n, field in string.gmatch(counts, '(%-?%d+) ([^\n]+)') do
    redis.call('HINCRBY', report, field, n)
  end
  redis.call('PEXPIREAT', report, keep_until)
end
