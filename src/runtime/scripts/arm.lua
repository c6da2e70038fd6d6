-- arm: the timer of a cascade about to be recorded (accept). Runs before
-- the record is written, so a crash in between leaves a timer without a
-- record (the claim that finds it forgets it), never a record without a
-- timer. An id already in the set keeps its score (a duplicate's running
-- cascade), but a lease is marked and a later wake-up brought forward:
-- at worst the cascade wakes early and puts its timer back.
-- timers, later, slot_list: the shard's keys (wake.lua `set_wake`)
-- due: the wake-up, ms   far_after: now + the horizon   slot_ms: a slot's length
local function arm(timers, later, slot_list, id, due, far_after, slot_ms)
  local score = redis.call('ZSCORE', timers, id)
  if is_lease(score) then
    poke(timers, id, 0, score)
  elseif score then
    if tonumber(due) <= tonumber(far_after) then
      redis.call('ZADD', timers, 'LT', due, id)
    end
  else
    set_wake(timers, later, slot_list, id, due, far_after, slot_ms)
  end
  return { 'armed' }
end
