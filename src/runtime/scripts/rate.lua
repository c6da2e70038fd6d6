-- A channel's throughput shared by every instance (GCRA): each send takes
-- its share here before it is requested, so a channel's `rate` is the
-- provider account's limit however many instances run. The time is
-- Redis's own, so instances whose clocks differ still share one schedule.
-- Sends are spaced evenly (no burst): no window of the rate's length ever
-- holds more than its count.
-- KEYS[1] the channel's next free moment, µs (Redis's clock)
-- ARGV[1] µs between two sends at the rate
-- Returns {'taken'}, or {'wait', µs until a send may go}.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
if free > now then
  return { 'wait', string.format('%d', free - now) }
end
local next_free = now + interval
redis.call('SET', KEYS[1], string.format('%d', next_free), 'PX', math.ceil(interval / 1000) + 1000)
return { 'taken' }
