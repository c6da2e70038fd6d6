-- limit.lua: take one send from a customer's sliding-window limits, or say
-- when it may go. All keys share the customer's hash tag.
-- KEYS[1..n] limit sorted sets   cascade:limit:{<customer>}:<scope>
-- ARGV[1] now ms   ARGV[2] member (notification id and step)
-- ARGV[3..] count and window ms for each key, in pairs
-- Returns 0 when the send is taken from every limit; otherwise the Unix ms
-- at which it would fit (nothing is taken then).
--
-- A send fits a limit where it already holds a place still in the window
-- (taken again: a retry of the same step), or where fewer than `count`
-- sends are in the window. When it does not fit now, it fits again only
-- when some send leaves its window: the earliest such moment at which it
-- fits every limit. (Not simply the count-th newest of each limit: a place
-- the send holds in one limit may itself leave before another opens, and a
-- reload may have lowered a count below what a window holds.)
local now = tonumber(ARGV[1])
local member = ARGV[2]
local limits = {}
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[2 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  limits[i] = {
    count = tonumber(ARGV[1 + 2 * i]),
    window = window,
    sends = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES'),
  }
end

local function fits(t)
  for _, limit in ipairs(limits) do
    local recent, holds = 0, false
    for j = 1, #limit.sends, 2 do
      if t - tonumber(limit.sends[j + 1]) < limit.window then
        recent = recent + 1
        if limit.sends[j] == member then
          holds = true
        end
      end
    end
    if not holds and recent >= limit.count then
      return false
    end
  end
  return true
end

if fits(now) then
  for i, key in ipairs(KEYS) do
    redis.call('ZADD', key, now, member)
    redis.call('PEXPIRE', key, limits[i].window)
  end
  return 0
end
local earliest = false
for _, limit in ipairs(limits) do
  for j = 2, #limit.sends, 2 do
    local leaves = tonumber(limit.sends[j]) + limit.window
    if leaves > now and (not earliest or leaves < earliest) and fits(leaves) then
      earliest = leaves
    end
  end
end
return earliest
