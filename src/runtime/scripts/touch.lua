-- touch.lua: after a decision that changed nothing, say where the
-- cascade's timer goes back to (wake.lua `settle` sets it on the shard),
-- unless the state changed meanwhile (then its newer writer sets it).
-- record_key   <prefix>:{<id>}:state (layout: record.lua)
-- receipts_key   <prefix>:{<id>}:receipts
-- version: the version read   due: the wake-up, ms, or "" when finished
-- seen: the receipts as the decision saw them, "<fields>\t<failed value>"
-- now: ms
-- A receipt recorded since the decision read them is acted on at once,
-- by a finished cascade too (its next decision counts it for the report).
-- Returns {'set', wake-up ms ("" when finished)}, {'moved_on'} when the
-- state had moved on (or is gone), {'unreadable', why}.
local function touch_record(record_key, receipts_key, version, due, seen, now)
  local record, reply = load_record(record_key, 'moved_on')
  if not record then
    return reply
  end
  if record[1] ~= version then
    return { 'moved_on' }
  end
  local flat = redis.call('HGETALL', receipts_key)
  local failed = ''
  for i = 1, #flat, 2 do
    if flat[i] == 'failed' then
      failed = flat[i + 1]
    end
  end
  if (#flat / 2) .. '\t' .. failed ~= seen then
    due = now
  end
  return { 'set', due }
end
