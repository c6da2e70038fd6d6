-- woken: a receipt was recorded on the cascade's keys; wake the cascade so
-- it decides at once (wake.lua `poke`), and append the receipt's stream
-- entry ("" for none: a receipt recorded before, woken again).
local function woken(timers, events, id, now, entry, max_len)
  poke(timers, id, now, redis.call('ZSCORE', timers, id))
  append_events(events, id, entry, max_len)
  return { 'woken' }
end
