-- touch.lua: put a cascade's wake-up back where its state says, unless the
-- state changed meanwhile (then its newer writer has set the timer).
-- KEYS[1] cascade record   cascade:{<id>}:state (layout: accept.lua)
-- KEYS[2] timer shard  cascade:timers:{<n>}
-- ARGV[1] notification id   ARGV[2] version read   ARGV[3] wake-up ms, or "" when finished
-- Returns 1 when the timer was set, 0 when the state had moved on.
local record = redis.call('GET', KEYS[1])
if not record or string.sub(record, 1, (string.find(record, '\31', 1, true) or 1) - 1) ~= ARGV[2] then
  return 0
end
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
