-- touch_whole.lua: touch as one script on one Redis server.
-- On one Redis server every key lives together, so the parts of an
-- operation (the cascade's keys, its timer shard, the provider index) run
-- as one script: one round trip, and atomic. On a Redis Cluster each part
-- is a call of its own, in the order the parts' headers give, with KEYS and
-- ARGV in the order of its function's parameters (runtime/store/call.rs).
-- Here KEYS and ARGV come in a fixed layout, the receipt words last, so
-- nothing is copied.
-- KEYS: record, receipts, timers, later, slot list, events, report
-- ARGV: id, version, due, receipts seen, now, now + horizon, slot ms,
--       stream bound, lease
-- A state that moved on under this claim's lease (its writer left the
-- lease alone) is woken now, to be decided afresh, rather than left to lapse.
local r = touch_record(KEYS[1], KEYS[2], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
if r[1] == 'set' then
  settle(KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], ARGV[1], r[2], ARGV[5], ARGV[6], ARGV[7],
    '', ARGV[8], ARGV[9], '', '')
elseif r[1] == 'moved_on' and ARGV[9] ~= '' then
  wake_if_held(KEYS[3], ARGV[1], ARGV[9], ARGV[5])
end
return r
