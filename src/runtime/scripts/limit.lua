-- limit.lua: take one send from a customer's sliding-window limits, or say
-- when it may go. All keys share the customer's hash tag.
-- KEYS[1..n] limit sorted sets   cascade:limit:{<customer>}:<scope>
-- ARGV[1] now ms   ARGV[2] member (notification id and step)
-- ARGV[3..] count and window ms for each key, in pairs
-- Returns 0 when the send is taken from every limit; otherwise the Unix ms
-- at which it would fit (nothing is taken then).
local now = tonumber(ARGV[1])
local not_before = 0
for i, key in ipairs(KEYS) do
  local count = tonumber(ARGV[1 + 2 * i])
  local window = tonumber(ARGV[2 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local n = redis.call('ZCARD', key)
  if n >= count and redis.call('ZSCORE', key, ARGV[2]) == false then
    -- The send that must age out first: the count-th newest.
    local oldest = redis.call('ZRANGE', key, n - count, n - count, 'WITHSCORES')
    local at = tonumber(oldest[2]) + window
    if at > not_before then
      not_before = at
    end
  end
end
if not_before > 0 then
  return not_before
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('PEXPIRE', key, tonumber(ARGV[2 + 2 * i]))
end
return 0
