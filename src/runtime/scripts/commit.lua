-- commit.lua: store one decision of the core on the cascade's keys,
-- atomically; its timer and stream entry follow on its shard (settle.lua,
-- with the wake-up this returns).
-- record_key   <prefix>:{<id>}:state (layout: record.lua)
-- receipts_key   <prefix>:{<id>}:receipts
-- data_key   <prefix>:{<id>}:data (receipt.lua): kept as long as the record
-- version: the version the decision was made on   state: the new state
-- due: the wake-up, ms, or "" when finished
-- sends: "1" when the decision orders a send: refuse it if a stopping
--   receipt is recorded (contract §6: receipts are read again in the same
--   atomic step that claims the send)
-- retention: ms
-- entries: the decision's timeline entries, one per line ("" for none),
--   appended to the record's timeline
-- n_stopping: how many of the words that follow stop this cascade
-- lines: how many timeline entries the decision read ("" not to check):
--   one recorded since (a receipt's) is a conflict, so the decision counts
--   it for the report (report/tally.rs) before its own
-- words[first..]: the receipt words that wake a running cascade at once
--   when recorded, the stopping ones first (from the core: the stopping
--   ones and `failed`)
-- Returns {'done', new version, wake-up ms for the timer ("" when
-- finished)}; {'conflict'} if the state changed meanwhile (decide again);
-- {'stopped'} if a stopping receipt arrived (decide again); {'gone'} if the
-- cascade is gone; {'unreadable', why}.
local function commit_record(record_key, receipts_key, data_key, version, state, due, sends, retention,
                             entries, n_stopping, lines, words, first)
  local record, reply = load_record(record_key, 'gone')
  if not record then
    return reply
  end
  if record[1] ~= version or (lines ~= '' and count_lines(record[4]) ~= tonumber(lines)) then
    return { 'conflict' }
  end
  local stopping, waking = {}, {}
  for i = first, first + tonumber(n_stopping) - 1 do
    stopping[#stopping + 1] = words[i]
  end
  for i = first, #words do
    waking[#waking + 1] = words[i]
  end
  -- The receipts, read once (a small hash; most cascades have none), and
  -- only when they matter: to refuse a send, or to wake a running cascade.
  local recorded = {}
  if sends == '1' or due ~= '' then
    local flat = redis.call('HGETALL', receipts_key)
    for i = 1, #flat, 2 do
      recorded[flat[i]] = true
    end
  end
  if sends == '1' and stopped(recorded, stopping) then
    return { 'stopped' }
  end
  if entries ~= '' then
    if record[4] ~= '' then
      record[4] = record[4] .. '\n' .. entries
    else
      record[4] = entries
    end
  end
  local next_v = tonumber(version) + 1
  record[1] = string.format('%d', next_v)
  record[2] = state
  local stored = write_record(record)
  if due ~= '' then
    redis.call('SET', record_key, stored, 'KEEPTTL')
    -- A receipt recorded while this decision was being made (say, during
    -- a send) is acted on now: wake the cascade at once.
    if stopped(recorded, waking) then
      due = '0'
    end
  elseif redis.call('PTTL', record_key) > 0 then
    -- Finished before (a late receipt's decision): its retention runs on
    -- from when it finished.
    redis.call('SET', record_key, stored, 'KEEPTTL')
  else
    -- Finished: kept for `status` and late receipts until the retention ends.
    redis.call('SET', record_key, stored, 'PX', retention)
    redis.call('PEXPIRE', receipts_key, retention)
    redis.call('PEXPIRE', data_key, retention)
  end
  return { 'done', next_v, due }
end
