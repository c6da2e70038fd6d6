-- receipt.lua: record a receipt and wake the cascade so it decides at once.
-- KEYS[1] cascade record  <prefix>:{<id>}:state (layout: record.lua)
-- KEYS[2] receipts hash   <prefix>:{<id>}:receipts
-- KEYS[3] timer shard     <prefix>:timers:{<n>}
-- KEYS[4] events stream   <prefix>:events
-- ARGV[1] notification id   ARGV[2] event word   ARGV[3] now ms
-- ARGV[4] timeline entry     ARGV[5] events stream max length
-- The first time of an event is kept, except `failed`, whose latest time
-- counts (it escalates the step that is current when it arrives).
-- Returns {'recorded'}, {'already'} when the event was already recorded,
-- {'unknown'} for an unknown notification, or {'unreadable', why} when its
-- record cannot be read (nothing stored then).
local raw = redis.call('GET', KEYS[1])
if not raw then
  return { 'unknown' }
end
local record, why = read_record(raw)
if not record then
  return { 'unreadable', why }
end
local fresh
if ARGV[2] == 'failed' then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  fresh = 1
else
  fresh = redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3])
end
if fresh == 0 then
  return { 'already' }
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
-- Append the entry to the record's timeline.
if record[4] ~= '' then
  record[4] = record[4] .. '\n' .. ARGV[4]
else
  record[4] = ARGV[4]
end
redis.call('SET', KEYS[1], write_record(record), 'KEEPTTL')
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'id', ARGV[1], 'e', ARGV[4])
-- Wake it now, unless an instance holds it under a claim's lease (wake.lua):
-- it may be sending on that lease, and a second claim now could send the
-- same step again. The holder's commit reads the receipts and wakes the
-- cascade at once itself (commit.lua, touch.lua).
if not is_lease(redis.call('ZSCORE', KEYS[3], ARGV[1])) then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
end
return { 'recorded' }
