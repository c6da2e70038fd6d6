-- settle.lua: a cascade's timer after a decision was stored on its keys.

-- The timer set as a stored decision says, its stream entry and its report
-- counts (wake.lua `add_counts`), with no
-- question asked: for the whole script on one Redis (commit_whole.lua),
-- where the record's version was checked and its receipts read in the same
-- atomic step, so no other holder and no unseen receipt can be in between.
local function set_after(timers, later, slot_list, events, report, id, due, far_after, slot_ms,
                         entries, max_len, counts, keep_until)
  add_counts(report, counts, keep_until)
  if due == '' then
    redis.call('ZREM', timers, id)
  else
    set_wake(timers, later, slot_list, id, due, far_after, slot_ms)
  end
  append_events(events, id, entries, max_len)
end

-- settle: the timer after a decision was stored on the cascade's keys
-- (commit, touch), and the decision's stream entry and report counts. A wake-up asked for
-- since the claim (a mark) is honoured at once. Another claim's lease is
-- left alone: the cascade is that claim's holder's now, who sets the timer
-- (on a cluster a writer that stalled between its record and this call
-- must not hand the cascade to a third claim while that holder sends).
-- timers, later, slot_list: the shard's keys (wake.lua `set_wake`)
-- events: the shard's stream   report: the shard's hash of this hour's
-- report counts
-- due: the wake-up, ms, or "" when finished   now: ms
-- far_after: now + the horizon   slot_ms: a slot's length
-- entries: the decision's timeline entries ("" for none)   max_len: the
-- stream's bound   lease: the end of the claim's lease the decision was
-- made under, while the timer holds it ("" for none)   counts, keep_until:
-- the decision's report counts (wake.lua `add_counts`)
-- A state that moved on under this claim's lease (its writer left the
-- lease alone, or wrote the timer in the other order on a cluster): wake
-- the cascade now, to be decided afresh, if the lease is still this
-- claim's; anything else there is the newer writer's.
local function wake_if_held(timers, id, lease, now)
  local score = redis.call('ZSCORE', timers, id)
  if is_lease(score) and math.floor(tonumber(score)) == tonumber(lease) then
    redis.call('ZADD', timers, now, id)
    return { 'woken' }
  end
  return { 'not_held' }
end

local function settle(timers, later, slot_list, events, report, id, due, now, far_after, slot_ms,
                      entries, max_len, lease, counts, keep_until)
  local score = redis.call('ZSCORE', timers, id)
  if is_lease(score) and (lease == '' or math.floor(tonumber(score)) ~= tonumber(lease)) then
    append_events(events, id, entries, max_len)
    add_counts(report, counts, keep_until)
    return { 'not_mine' }
  end
  if due ~= '' and is_poked(score) then
    due = now
  end
  set_after(timers, later, slot_list, events, report, id, due, far_after, slot_ms, entries,
    max_len, counts, keep_until)
  return { 'settled' }
end
