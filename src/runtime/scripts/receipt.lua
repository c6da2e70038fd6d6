-- receipt.lua: record a receipt and wake the cascade so it decides at once.
-- KEYS[1] cascade record  cascade:{<id>}:state (layout: accept.lua)
-- KEYS[2] receipts hash   cascade:{<id>}:receipts
-- KEYS[3] timer shard     cascade:timers:{<n>}
-- KEYS[4] events stream   cascade:events
-- ARGV[1] notification id   ARGV[2] event word   ARGV[3] now ms
-- ARGV[4] timeline entry     ARGV[5] events stream max length
-- The first time of an event is kept, except `failed`, whose latest time
-- counts (it escalates the step that is current when it arrives).
-- Returns 1 when recorded, 2 when the event was already recorded, 0 for an
-- unknown notification.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local fresh
if ARGV[2] == 'failed' then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  fresh = 1
else
  fresh = redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3])
end
if fresh == 0 then
  return 2
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
-- Append the entry to the record's timeline (the fourth field).
local record = redis.call('GET', KEYS[1])
local _, _, n_end, t_end = record_ends(record)
local sep = '\n'
if t_end == n_end + 1 then
  sep = ''
end
redis.call('SET', KEYS[1], string.sub(record, 1, t_end - 1) .. sep .. ARGV[4] .. string.sub(record, t_end), 'KEEPTTL')
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'id', ARGV[1], 'e', ARGV[4])
-- Wake it now, unless an instance holds it under a claim's lease (wake.lua):
-- it may be sending on that lease, and a second claim now could send the
-- same step again. The holder's commit reads the receipts and wakes the
-- cascade at once itself (commit.lua, touch.lua).
if not is_lease(redis.call('ZSCORE', KEYS[3], ARGV[1])) then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
end
return 1
