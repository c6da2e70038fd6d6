-- commit_whole.lua: commit as one script on one Redis server.
-- On one Redis server every key lives together, so the parts of an
-- operation (the cascade's keys, its timer shard, the provider index) run
-- as one script: one round trip, and atomic. On a Redis Cluster each part
-- is a call of its own, in the order the parts' headers give, with KEYS and
-- ARGV in the order of its function's parameters (runtime/store/call.rs).
-- Here KEYS and ARGV come in a fixed layout, the receipt words last, so
-- nothing is copied.
-- KEYS: record, receipts, data, timers, later, slot list, events, report, and
--       the provider index's key when the decision records a send
-- ARGV: id, now + horizon, slot ms, stream bound, peer, value, ttl,
--       version, state, due, sends, retention, entries, n_stopping, lines,
--       counts, keep until, words…
-- The record's version check and the timer are one atomic step here: the
-- timer is set as the decision says (settle.lua `set_after`); the lease
-- guard and the marks are for the two calls of a cluster.
local r = commit_record(KEYS[1], KEYS[2], KEYS[3], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12],
  ARGV[13], ARGV[14], ARGV[15], ARGV, 18)
if r[1] == 'done' then
  if KEYS[9] then
    index_send(KEYS[9], ARGV[5], ARGV[6], ARGV[7])
  end
  set_after(KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], ARGV[1], r[3], ARGV[2], ARGV[3],
    ARGV[13], ARGV[4], ARGV[16], ARGV[17])
end
return r
