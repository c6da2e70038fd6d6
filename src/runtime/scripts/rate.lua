-- A channel's throughput shared by every instance (GCRA): each send takes
-- its share here before it is requested, so a channel's `rate` is the
-- provider account's limit however many instances run. The time is
-- Redis's own, so instances whose clocks differ still share one schedule.
-- Sends are spaced evenly (no burst): no window of the rate's length ever
-- holds more than its count. A share is reserved at the channel's next
-- free moment when that comes within the caller's wait, so each send asks
-- once and sleeps once, in the order they asked.
-- KEYS[1] the channel's next free moment, µs (Redis's clock)
-- ARGV[1] µs between two sends at the rate
-- ARGV[2] the longest the caller will wait for its share, µs
-- Returns {'taken', µs to wait before sending}, or {'wait', µs until the
-- next share is free} (nothing reserved).
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then
  slot = now
end
local delay = slot - now
if delay > tonumber(ARGV[2]) then
  return { 'wait', string.format('%d', delay) }
end
local next_free = slot + interval
redis.call('SET', KEYS[1], string.format('%d', next_free), 'PX', math.ceil((next_free - now) / 1000) + 1000)
return { 'taken', string.format('%d', delay) }
