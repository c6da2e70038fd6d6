-- receipt_whole.lua: receipt as one script on one Redis server.
-- On one Redis server every key lives together, so the parts of an
-- operation (the cascade's keys, its timer shard, the provider index) run
-- as one script: one round trip, and atomic. On a Redis Cluster each part
-- is a call of its own, in the order the parts' headers give, with KEYS and
-- ARGV in the order of its function's parameters (runtime/store/call.rs).
-- Here KEYS and ARGV come in a fixed layout, the receipt words last, so
-- nothing is copied.
-- KEYS: record, receipts, data, timers, events
-- ARGV: id, event, now, entry, stream bound, data max, data key and value pairs…
local r = receipt_record(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[3], ARGV[4], ARGV[6], ARGV, 7)
if r[1] == 'recorded' then
  woken(KEYS[4], KEYS[5], ARGV[1], ARGV[3], ARGV[4], ARGV[5])
end
return r
