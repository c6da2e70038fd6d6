-- touch.lua: after a decision that changed nothing, say where the
-- cascade's timer goes back to (wake.lua `settle` sets it on the shard),
-- unless the state changed meanwhile (then its newer writer sets it).
-- k[1] cascade record   <prefix>:{<id>}:state (layout: record.lua)
-- k[2] receipts hash    <prefix>:{<id>}:receipts
-- a[1] notification id   a[2] version read   a[3] wake-up ms, or "" when finished
-- a[4] the receipts as the decision saw them: "<fields>\t<failed value>"
-- a[5] now ms
-- A receipt recorded since the decision read them is acted on at once.
-- Returns {'set', wake-up ms ("" when finished)}, {'moved_on'} when the
-- state had moved on (or is gone), {'unreadable', why}.
local function touch_record(k, a)
  local raw = redis.call('GET', k[1])
  if not raw then
    return { 'moved_on' }
  end
  local record, why = read_record(raw)
  if not record then
    return { 'unreadable', why }
  end
  if record[1] ~= a[2] then
    return { 'moved_on' }
  end
  local due = a[3]
  if due ~= '' then
    local flat = redis.call('HGETALL', k[2])
    local failed = ''
    for i = 1, #flat, 2 do
      if flat[i] == 'failed' then
        failed = flat[i + 1]
      end
    end
    if (#flat / 2) .. '\t' .. failed ~= a[4] then
      due = a[5]
    end
  end
  return { 'set', due }
end
