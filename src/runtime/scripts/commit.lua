-- commit.lua: store one decision of the core on the cascade's keys,
-- atomically; its timer and stream entry follow on its shard (wake.lua
-- `settle`, with the wake-up this returns).
-- k[1] cascade record  <prefix>:{<id>}:state (layout: record.lua)
-- k[2] receipts hash   <prefix>:{<id>}:receipts
-- a[1] notification id    a[2] the version the decision was made on
-- a[3] new state          a[4] wake-up ms, or "" when finished
-- a[5] "1" when the decision orders a send: refuse it if a stopping
--      receipt is recorded (contract §6: receipts are read again in the same
--      atomic step that claims the send)
-- a[6] retention ms
-- a[7] the decision's timeline entries, one per line ("" for none),
--      appended to the record's timeline
-- a[8] how many of the words that follow stop this cascade
-- a[9..] the receipt words that wake a running cascade at once when
--      recorded, the stopping ones first (from the core: the stopping ones
--      and `failed`)
-- Returns {'done', new version, wake-up ms for the timer ("" when
-- finished)}; {'conflict'} if the state changed meanwhile (decide again);
-- {'stopped'} if a stopping receipt arrived (decide again); {'gone'} if the
-- cascade is gone; {'unreadable', why}.
local function commit_record(k, a)
  local raw = redis.call('GET', k[1])
  if not raw then
    return { 'gone' }
  end
  local record, why = read_record(raw)
  if not record then
    return { 'unreadable', why }
  end
  if record[1] ~= a[2] then
    return { 'conflict' }
  end
  local n_stopping = tonumber(a[8])
  local stopping, waking = {}, {}
  for i = 9, 8 + n_stopping do
    stopping[#stopping + 1] = a[i]
  end
  for i = 9, #a do
    waking[#waking + 1] = a[i]
  end
  -- The receipts, read once (a small hash; most cascades have none), and
  -- only when they matter: to refuse a send, or to wake a running cascade.
  local recorded = {}
  if a[5] == '1' or a[4] ~= '' then
    local flat = redis.call('HGETALL', k[2])
    for i = 1, #flat, 2 do
      recorded[flat[i]] = true
    end
  end
  if a[5] == '1' and stopped(recorded, stopping) then
    return { 'stopped' }
  end
  if a[7] ~= '' then
    if record[4] ~= '' then
      record[4] = record[4] .. '\n' .. a[7]
    else
      record[4] = a[7]
    end
  end
  local next_v = tonumber(a[2]) + 1
  record[1] = string.format('%d', next_v)
  record[2] = a[3]
  local stored = write_record(record)
  local due = a[4]
  if due ~= '' then
    redis.call('SET', k[1], stored, 'KEEPTTL')
    -- A receipt recorded while this decision was being made (say, during
    -- a send) is acted on now: wake the cascade at once.
    if stopped(recorded, waking) then
      due = '0'
    end
  else
    -- Finished: kept for `status` and late receipts until the retention ends.
    redis.call('SET', k[1], stored, 'PX', a[6])
    redis.call('PEXPIRE', k[2], a[6])
  end
  return { 'done', next_v, due }
end
