-- limit.lua: take one send from a customer's sliding-window limits, or say
-- when it may go. All keys share the customer's hash tag.
-- Per limit, two keys: the scope's sends, shared by every limit on that
-- scope whatever its window (policies may set different windows for one
-- scope: a global `3/1d` and a policy's `1/30m`), and the longest window
-- any limit has counted them over (at least ARGV[3]), which bounds what may
-- be trimmed: a shorter window must not drop sends a longer one still
-- counts. A longer window not counted on the scope lately, and over the
-- floor, finds only what the others kept.
-- KEYS[2i-1] the scope's sends, a sorted set   <prefix>:limit:{<customer>}:<scope>
-- KEYS[2i]   the longest window, ms            <prefix>:limit-keep:{<customer>}:<scope>
-- ARGV[1] now ms   ARGV[2] member (notification id and step)
-- ARGV[3] the least time sends are kept, ms
-- ARGV[2i+2], ARGV[2i+3] count and window ms of limit i
-- Returns {'taken'} when the send is taken from every limit (nothing is
-- taken otherwise), or {'not_before', Unix ms} when it would fit.
local now = tonumber(ARGV[1])
local member = ARGV[2]
-- Per limit: its count, window and the sends in its window now.
local limits = {}
for i = 1, #KEYS / 2 do
  local sends, keep_key = KEYS[2 * i - 1], KEYS[2 * i]
  local window = tonumber(ARGV[3 + 2 * i])
  local keep = math.max(window, tonumber(ARGV[3]), tonumber(redis.call('GET', keep_key)) or 0)
  -- Remembered also when the send is blocked: its retry counts over this window.
  redis.call('SET', keep_key, keep, 'PX', keep)
  redis.call('ZREMRANGEBYSCORE', sends, '-inf', now - keep)
  redis.call('PEXPIRE', sends, keep)
  local flat = redis.call('ZRANGEBYSCORE', sends, '(' .. (now - window), '+inf', 'WITHSCORES')
  local recent = {}
  for j = 1, #flat, 2 do
    recent[#recent + 1] = { flat[j], tonumber(flat[j + 1]) }
  end
  limits[i] = { count = tonumber(ARGV[2 + 2 * i]), window = window, recent = recent, keep = keep }
end
-- Does the send fit every limit at `at`: fewer than `count` sends less
-- than `window` before it, or it holds a place itself (a retry)?
local function fits(at)
  for _, l in ipairs(limits) do
    local n, mine = 0, false
    for _, e in ipairs(l.recent) do
      if at - e[2] < l.window then
        n = n + 1
        mine = mine or e[1] == member
      end
    end
    if not mine and n >= l.count then
      return false
    end
  end
  return true
end
if not fits(now) then
  -- It fits again only when some send leaves a window: the first such
  -- moment at which it fits them all.
  local leaving = {}
  for _, l in ipairs(limits) do
    for _, e in ipairs(l.recent) do
      leaving[#leaving + 1] = e[2] + l.window
    end
  end
  table.sort(leaving)
  for _, at in ipairs(leaving) do
    if at > now and fits(at) then
      return { 'not_before', at }
    end
  end
  return { 'not_before', leaving[#leaving] }
end
for i, l in ipairs(limits) do
  redis.call('ZADD', KEYS[2 * i - 1], now, member)
  redis.call('PEXPIRE', KEYS[2 * i - 1], l.keep)
end
return { 'taken' }
