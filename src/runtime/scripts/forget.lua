-- forget.lua: take a claimed cascade whose record is gone (retention ran
-- out, deleted by hand) out of its timer shard: nothing is left to wake.
-- KEYS[1] cascade record  <prefix>:{<id>}:state
-- KEYS[2] timer shard     <prefix>:timers:{<n>}
-- ARGV[1] notification id
-- A record written since the claim read it (the id accepted anew) keeps
-- its timer: accept.lua writes record and timer together.
-- Returns {'forgotten'}, or {'kept'} when the record is back.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return { 'kept' }
end
redis.call('ZREM', KEYS[2], ARGV[1])
return { 'forgotten' }
