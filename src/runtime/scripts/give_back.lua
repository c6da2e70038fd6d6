-- give_back.lua: give back a claim's lease that nothing was stored under (a
-- wake-up that failed before it could send or store): the cascade is woken
-- again when the lease would have ended, as a plain wake-up, not as a
-- lapsed claim, whose send would count as uncertain; at once if a wake-up
-- was asked for meanwhile (wake.lua). Another claim's lease stays (this
-- one ran out, and the cascade is another instance's now); any other score
-- stays unless it is later, which at worst wakes the cascade early.
-- KEYS[1] timer shard     <prefix>:timers:{<n>}
-- ARGV[1] notification id   ARGV[2] the lease's end, ms
-- Returns {'given_back'}.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and not (is_lease(score) and math.floor(tonumber(score)) ~= tonumber(ARGV[2])) then
  local at = tonumber(ARGV[2])
  if is_poked(score) then
    at = 0
  end
  if tonumber(score) > at then
    redis.call('ZADD', KEYS[1], at, ARGV[1])
  end
end
return { 'given_back' }
