-- accept.lua: record a new cascade, unless its id is already known.
-- KEYS[1] state hash      cascade:{<id>}:state
-- KEYS[2] receipts hash   cascade:{<id>}:receipts
-- KEYS[3] timer shard     cascade:timers:{<n>}
-- KEYS[4] events stream   cascade:events
-- ARGV[1] notification id      ARGV[2] cascade state (JSON)
-- ARGV[3] notification (JSON)  ARGV[4] "<policy snapshot hash>\t<time zone>\t<customer id>"
-- ARGV[5] wake-up ms, or "" when already finished
-- ARGV[6] retention ms         ARGV[7] events stream max length
-- ARGV[8..] timeline entries (JSON)
-- The state hash holds: v (version), s (state), n (notification), m (the
-- meta line of ARGV[4]) and t (the timeline: entries, one per line), in one
-- key, because every separate key costs Redis about 70 bytes more.
-- Returns 1 when recorded, 0 for a duplicate id.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local entries = {}
for i = 8, #ARGV do
  entries[#entries + 1] = ARGV[i]
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'id', ARGV[1], 'e', ARGV[i])
end
redis.call('HSET', KEYS[1], 's', ARGV[2], 'v', 1, 'n', ARGV[3], 'm', ARGV[4], 't', table.concat(entries, '\n'))
if ARGV[5] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
return 1
