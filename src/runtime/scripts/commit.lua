-- commit.lua: store one decision of the core, atomically.
-- KEYS[1] cascade record  <prefix>:{<id>}:state (layout: record.lua)
-- KEYS[2] receipts hash   <prefix>:{<id>}:receipts
-- KEYS[3] timer shard     <prefix>:timers:{<n>}
-- KEYS[4] events stream   <prefix>:events
-- KEYS[5] the shard's index of far slots   <prefix>:later:{<n>} (wake.lua)
-- KEYS[6] the wake-up's slot list   <prefix>:later:{<n>}:<slot> (wake.lua;
--         of now when the decision finishes the cascade, and then untouched)
-- KEYS[7] only when the decision records a send's provider message id:
--         where to keep it, a key per message id or the day's hash of a
--         bucket of peers (VK)
-- ARGV[1] notification id    ARGV[2] the version the decision was made on
-- ARGV[3] new state          ARGV[4] wake-up ms, or "" when finished
-- ARGV[5] "1" when the decision orders a send: refuse it if a stopping
--         receipt is recorded (contract §6: receipts are read again in the same
--         atomic step that claims the send)
-- ARGV[6] retention ms       ARGV[7] events stream max length
-- ARGV[8] with KEYS[7]: the peer (its field in that hash), or "" for a key
-- ARGV[9] with KEYS[7]: for a key "<step>\t<notification id>"; for a peer
--         "<message id> <step> <notification id>", appended to its field
-- ARGV[10] with KEYS[7]: the key's time to live, seconds
-- ARGV[11] now + the horizon, ms   ARGV[12] slot length, ms (wake.lua)
-- ARGV[13] the decision's timeline entries, one per line ("" for none),
--          appended to the record's timeline and to the stream
-- ARGV[14] how many of the words that follow stop this cascade
-- ARGV[15..] the receipt words that wake a running cascade at once when
--          recorded, the stopping ones first (from the core: the stopping
--          ones and `failed`)
-- Returns {'done', new version}; {'conflict'} if the state changed
-- meanwhile (decide again); {'stopped'} if a stopping receipt arrived
-- (decide again); {'gone'} if the cascade is gone; {'unreadable', why}.
local raw = redis.call('GET', KEYS[1])
if not raw then
  return { 'gone' }
end
local record, why = read_record(raw)
if not record then
  return { 'unreadable', why }
end
if record[1] ~= ARGV[2] then
  return { 'conflict' }
end
local n_stopping = tonumber(ARGV[14])
local stopping, waking = {}, {}
for i = 15, 14 + n_stopping do
  stopping[#stopping + 1] = ARGV[i]
end
for i = 15, #ARGV do
  waking[#waking + 1] = ARGV[i]
end
-- The receipts, read once (a small hash; most cascades have none), and
-- only when they matter: to refuse a send, or to wake a running cascade.
local recorded = {}
if ARGV[5] == '1' or ARGV[4] ~= '' then
  local flat = redis.call('HGETALL', KEYS[2])
  for i = 1, #flat, 2 do
    recorded[flat[i]] = true
  end
end
if ARGV[5] == '1' and stopped(recorded, stopping) then
  return { 'stopped' }
end
if ARGV[13] ~= '' then
  if record[4] ~= '' then
    record[4] = record[4] .. '\n' .. ARGV[13]
  else
    record[4] = ARGV[13]
  end
  -- One stream entry per decision, its timeline entries one per line.
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'id', ARGV[1], 'e', ARGV[13])
end
if KEYS[7] then
  if ARGV[8] == '' then
    redis.call('SET', KEYS[7], ARGV[9], 'EX', ARGV[10])
  else
    local sent = redis.call('HGET', KEYS[7], ARGV[8])
    if sent then
      sent = sent .. ' ' .. ARGV[9]
    else
      sent = ARGV[9]
    end
    redis.call('HSET', KEYS[7], ARGV[8], sent)
    redis.call('EXPIRE', KEYS[7], ARGV[10])
  end
end
local next_v = tonumber(ARGV[2]) + 1
record[1] = string.format('%d', next_v)
record[2] = ARGV[3]
local stored = write_record(record)
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[1], stored, 'KEEPTTL')
  -- A receipt recorded while this decision was being made (say, during a
  -- send) either poked the timer, which the ZADD below would undo, or found
  -- the cascade under a claim's lease and left the waking to this commit
  -- (receipt.lua): wake the cascade at once, so the receipt is acted on now.
  local due = ARGV[4]
  if stopped(recorded, waking) then
    due = 0
  end
  set_wake(KEYS[3], KEYS[5], KEYS[6], ARGV[1], due, ARGV[11], ARGV[12])
else
  -- Finished: kept for `status` and late receipts until the retention ends.
  redis.call('SET', KEYS[1], stored, 'PX', ARGV[6])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
return { 'done', next_v }
