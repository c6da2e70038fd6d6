-- commit.lua: store one decision of the core, atomically.
-- KEYS[1] cascade record  cascade:{<id>}:state (layout: accept.lua)
-- KEYS[2] receipts hash   cascade:{<id>}:receipts
-- KEYS[3] timer shard     cascade:timers:{<n>}
-- KEYS[4] events stream   cascade:events
-- KEYS[5] the shard's index of far slots   cascade:later:{<n>} (wake.lua)
-- ARGV[1] notification id    ARGV[2] the version the decision was made on
-- ARGV[3] new state          ARGV[4] wake-up ms, or "" when finished
-- ARGV[5] "1" when the decision orders a send: refuse it if a stopping
--         receipt is recorded (contract §6: receipts are read again in the same
--         atomic step that claims the send)
-- ARGV[6] stopping receipt words, comma-separated (also used to wake the
--         cascade at once when one is already recorded)
-- ARGV[7] retention ms       ARGV[8] events stream max length
-- ARGV[9] where to keep the provider message id of the send this decision
--         records ("" for none): a key per message id, or the day's hash of
--         a bucket of peers (VK); built by the caller, so like claim.lua this
--         needs one node
-- ARGV[10] the peer (its field in that hash), or "" for a key
-- ARGV[11] for a key "<step>\t<notification id>"; for a peer
--          "<message id> <step> <notification id>", appended to its field
-- ARGV[12] the key's time to live, seconds
-- ARGV[13] now + the horizon, ms   ARGV[14] slot length, ms (wake.lua)
-- ARGV[15..] timeline entries, appended to the record's timeline and the stream
-- Returns the new version; -1 if the state changed meanwhile (decide again);
-- -2 if a stopping receipt arrived (decide again); -3 if the cascade is gone.
local record = redis.call('GET', KEYS[1])
if not record then
  return -3
end
local v_end, s_end, n_end, t_end = record_ends(record)
if string.sub(record, 1, v_end - 1) ~= ARGV[2] then
  return -1
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
local function stopped()
  if recorded['cancelled'] then
    return true
  end
  for word in string.gmatch(ARGV[6], '[^,]+') do
    if recorded[word] then
      return true
    end
  end
  return false
end
if ARGV[5] == '1' and stopped() then
  return -2
end
local timeline = string.sub(record, n_end + 1, t_end - 1)
local entries = {}
if timeline ~= '' then
  entries[1] = timeline
end
if #ARGV >= 15 then
  local added = table.concat(ARGV, '\n', 15)
  entries[#entries + 1] = added
  -- One stream entry per decision, its timeline entries one per line.
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*', 'id', ARGV[1], 'e', added)
end
if ARGV[9] ~= '' then
  if ARGV[10] == '' then
    redis.call('SET', ARGV[9], ARGV[11], 'EX', ARGV[12])
  else
    local sent = redis.call('HGET', ARGV[9], ARGV[10])
    if sent then
      sent = sent .. ' ' .. ARGV[11]
    else
      sent = ARGV[11]
    end
    redis.call('HSET', ARGV[9], ARGV[10], sent)
    redis.call('EXPIRE', ARGV[9], ARGV[12])
  end
end
local next_v = tonumber(ARGV[2]) + 1
local stored = table.concat({
  string.format('%d', next_v),
  ARGV[3],
  string.sub(record, s_end + 1, n_end - 1),
  table.concat(entries, '\n'),
  string.sub(record, t_end + 1),
}, '\31')
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[1], stored, 'KEEPTTL')
  -- A receipt recorded while this decision was being made (say, during a
  -- send) either poked the timer, which the ZADD below would undo, or found
  -- the cascade under a claim's lease and left the waking to this commit
  -- (receipt.lua): wake the cascade at once, so the receipt is acted on now.
  local due = ARGV[4]
  if recorded['failed'] or stopped() then
    due = 0
  end
  set_wake(KEYS[3], KEYS[5], ARGV[1], due, ARGV[13], ARGV[14])
else
  -- Finished: kept for `status` and late receipts until the retention ends.
  redis.call('SET', KEYS[1], stored, 'PX', ARGV[7])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
end
return next_v
