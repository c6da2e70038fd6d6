-- touch.lua: put a cascade's wake-up back where its state says, unless the
-- state changed meanwhile (then its newer writer has set the timer).
-- KEYS[1] cascade record   cascade:{<id>}:state (layout: accept.lua)
-- KEYS[2] timer shard  cascade:timers:{<n>}
-- KEYS[3] the shard's index of far slots   cascade:later:{<n>} (wake.lua)
-- KEYS[4] receipts hash    cascade:{<id>}:receipts
-- ARGV[1] notification id   ARGV[2] version read   ARGV[3] wake-up ms, or "" when finished
-- ARGV[4] now + the horizon, ms   ARGV[5] slot length, ms (wake.lua)
-- ARGV[6] the receipts as the decision saw them: "<fields>\t<failed value>"
-- ARGV[7] now ms
-- A receipt recorded since the decision read them did not wake the cascade
-- if it came while the cascade was claimed (receipt.lua): then wake it now,
-- so the receipt is acted on at once.
-- Returns 1 when the timer was set, 0 when the state had moved on.
local record = redis.call('GET', KEYS[1])
if not record or string.sub(record, 1, (string.find(record, '\31', 1, true) or 1) - 1) ~= ARGV[2] then
  return 0
end
if ARGV[3] ~= '' then
  local flat = redis.call('HGETALL', KEYS[4])
  local failed = ''
  for i = 1, #flat, 2 do
    if flat[i] == 'failed' then
      failed = flat[i + 1]
    end
  end
  local due = ARGV[3]
  if (#flat / 2) .. '\t' .. failed ~= ARGV[6] then
    due = ARGV[7]
  end
  set_wake(KEYS[2], KEYS[3], ARGV[1], due, ARGV[4], ARGV[5])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
