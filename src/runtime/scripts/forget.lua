-- forget.lua: take a claimed cascade whose record is gone (retention ran
-- out, deleted by hand, or a crash between an accept's timer and its
-- record) out of its timer shard: nothing is left to wake.
-- KEYS[1] timer shard     <prefix>:timers:{<n>}
-- ARGV[1] notification id   ARGV[2] now ms
-- Only a lease is taken out: the claim that found no record holds one. A
-- new cascade with this id armed since (accept: timer first, then record)
-- marked that lease (wake.lua); then it is woken now instead, and the
-- record it finds then is the new one.
-- Returns {'forgotten'}, or {'kept'} when the id stays to be woken.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not is_lease(score) then
  return { 'kept' }
end
if is_poked(score) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return { 'kept' }
end
redis.call('ZREM', KEYS[1], ARGV[1])
return { 'forgotten' }
