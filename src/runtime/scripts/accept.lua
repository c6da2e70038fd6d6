-- accept.lua: record a new cascade, unless its id is already known.
-- KEYS[1] state hash      cascade:{<id>}:state
-- KEYS[2] timeline list   cascade:{<id>}:timeline
-- KEYS[3] receipts hash   cascade:{<id>}:receipts
-- KEYS[4] timer shard     cascade:timers:{<n>}
-- KEYS[5] events stream   cascade:events
-- ARGV[1] notification id      ARGV[2] cascade state (JSON)
-- ARGV[3] notification (JSON)  ARGV[4] policy snapshot hash
-- ARGV[5] time zone            ARGV[6] customer id
-- ARGV[7] wake-up ms, or "" when already finished
-- ARGV[8] retention ms         ARGV[9] events stream max length
-- ARGV[10..] timeline entries (JSON)
-- Returns 1 when recorded, 0 for a duplicate id.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 's', ARGV[2], 'v', 1, 'n', ARGV[3], 'pol', ARGV[4], 'tz', ARGV[5], 'cust', ARGV[6])
for i = 10, #ARGV do
  redis.call('RPUSH', KEYS[2], ARGV[i])
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[9], '*', 'id', ARGV[1], 'e', ARGV[i])
end
if ARGV[7] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
  redis.call('PEXPIRE', KEYS[2], ARGV[8])
  redis.call('PEXPIRE', KEYS[3], ARGV[8])
end
return 1
