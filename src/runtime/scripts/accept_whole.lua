-- accept_whole.lua: accept as one script on one Redis server.
-- On one Redis server every key lives together, so the parts of an
-- operation (the cascade's keys, its timer shard, the provider index) run
-- as one script: one round trip, and atomic. On a Redis Cluster each part
-- is a call of its own, in the order the parts' headers give, with KEYS and
-- ARGV in the order of its function's parameters (runtime/store/call.rs).
-- Here KEYS and ARGV come in a fixed layout, the receipt words last, so
-- nothing is copied.
-- KEYS: record, receipts, timers, later, slot list, events, report,
--       customer index
-- ARGV: id, due ("" when finished), now + horizon, slot ms, timeline,
--       stream bound, record, finished, retention, counts, keep until,
--       now, customer index size, words…
local r = accept_record(KEYS[1], KEYS[2], ARGV[7], ARGV[8], ARGV[9], ARGV, 14)
if r[1] == 'recorded' then
  if ARGV[2] ~= '' then
    arm(KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
  end
  append_events(KEYS[6], ARGV[1], ARGV[5], ARGV[6])
  add_counts(KEYS[7], ARGV[10], ARGV[11])
  index_customer(KEYS[8], ARGV[1], ARGV[12], ARGV[13], ARGV[9])
end
return r
