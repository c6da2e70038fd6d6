-- touch.lua: put a cascade's wake-up back where its state says, unless the
-- state changed meanwhile (then its newer writer has set the timer).
-- KEYS[1] cascade record   <prefix>:{<id>}:state (layout: record.lua)
-- KEYS[2] timer shard      <prefix>:timers:{<n>}
-- KEYS[3] the shard's index of far slots   <prefix>:later:{<n>} (wake.lua)
-- KEYS[4] receipts hash    <prefix>:{<id>}:receipts
-- KEYS[5] the wake-up's slot list   <prefix>:later:{<n>}:<slot> (wake.lua;
--         of now when the cascade is finished, and then untouched)
-- ARGV[1] notification id   ARGV[2] version read   ARGV[3] wake-up ms, or "" when finished
-- ARGV[4] now + the horizon, ms   ARGV[5] slot length, ms (wake.lua)
-- ARGV[6] the receipts as the decision saw them: "<fields>\t<failed value>"
-- ARGV[7] now ms
-- A receipt recorded since the decision read them did not wake the cascade
-- if it came while the cascade was claimed (receipt.lua): then wake it now,
-- so the receipt is acted on at once.
-- Returns {'set'} when the timer was set, {'moved_on'} when the state had
-- moved on (or is gone), {'unreadable', why}.
local raw = redis.call('GET', KEYS[1])
if not raw then
  return { 'moved_on' }
end
local record, why = read_record(raw)
if not record then
  return { 'unreadable', why }
end
if record[1] ~= ARGV[2] then
  return { 'moved_on' }
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
  set_wake(KEYS[2], KEYS[3], KEYS[5], ARGV[1], due, ARGV[4], ARGV[5])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return { 'set' }
