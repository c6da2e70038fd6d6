-- limit.lua: take one send from a customer's sliding-window limits, or say
-- when it may go. All keys share the customer's hash tag.
-- Per limit, two keys: the scope's sends, shared by every limit on that
-- scope whatever its window (policies may set different windows for one
-- scope: a global `3/1d` and a policy's `1/30m`), and the longest window
-- any limit has counted them over, which bounds what may be trimmed: a
-- shorter window must not drop sends a longer one still counts.
-- KEYS[2i-1] the scope's sends, a sorted set   <prefix>:limit:{<customer>}:<scope>
-- KEYS[2i]   the longest window, ms            <prefix>:limit-keep:{<customer>}:<scope>
-- ARGV[1] now ms   ARGV[2] member (notification id and step)
-- ARGV[2i+1], ARGV[2i+2] count and window ms of limit i
-- Returns {'taken'} when the send is taken from every limit (nothing is
-- taken otherwise), or {'not_before', Unix ms} when it would fit.
local now = tonumber(ARGV[1])
local not_before = 0
local keeps = {}
for i = 1, #KEYS / 2 do
  local sends, keep_key = KEYS[2 * i - 1], KEYS[2 * i]
  local count = tonumber(ARGV[1 + 2 * i])
  local window = tonumber(ARGV[2 + 2 * i])
  local keep = math.max(window, tonumber(redis.call('GET', keep_key)) or 0)
  -- Remembered also when the send is blocked: its retry counts over this window.
  redis.call('SET', keep_key, keep, 'PX', keep)
  keeps[i] = keep
  redis.call('ZREMRANGEBYSCORE', sends, '-inf', now - keep)
  redis.call('PEXPIRE', sends, keep)
  -- Sends less than `window` ago.
  local after = '(' .. (now - window)
  local n = redis.call('ZCOUNT', sends, after, '+inf')
  local mine = tonumber(redis.call('ZSCORE', sends, ARGV[2]))
  if n >= count and not (mine and mine > now - window) then
    -- The send that must age out first: the count-th newest in the window.
    local oldest = redis.call('ZRANGEBYSCORE', sends, after, '+inf', 'WITHSCORES', 'LIMIT', n - count, 1)
    local at = tonumber(oldest[2]) + window
    if at > not_before then
      not_before = at
    end
  end
end
if not_before > 0 then
  return { 'not_before', not_before }
end
for i = 1, #KEYS / 2 do
  redis.call('ZADD', KEYS[2 * i - 1], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[2 * i - 1], keeps[i])
end
return { 'taken' }
