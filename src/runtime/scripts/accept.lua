-- accept.lua: record a new cascade, unless its id is already known.
-- KEYS[1] cascade record  <prefix>:{<id>}:state
-- KEYS[2] receipts hash   <prefix>:{<id>}:receipts
-- KEYS[3] timer shard     <prefix>:timers:{<n>}
-- KEYS[4] events stream   <prefix>:events
-- KEYS[5] the shard's index of far slots   <prefix>:later:{<n>} (wake.lua)
-- KEYS[6] the wake-up's slot list   <prefix>:later:{<n>}:<slot> (wake.lua;
--         of now when the cascade is already finished, and then untouched)
-- ARGV[1] notification id
-- ARGV[2] the record, built by the caller in the current layout (record.lua)
-- ARGV[3] its timeline entries, one per line, for the events stream
-- ARGV[4] wake-up ms, or "" when already finished
-- ARGV[5] retention ms         ARGV[6] events stream max length
-- ARGV[7] now + the horizon, ms   ARGV[8] slot length, ms (wake.lua)
-- ARGV[9..] when the state stored already orders the first send: the
--         receipt words that stop this cascade (from the core); a receipt
--         recorded before the notification arrived refuses it, as in
--         commit.lua. None when it orders no send.
-- Returns {'recorded'}, {'duplicate'} for an id already known, or
-- {'refused'} when a stopping receipt refused the send (nothing stored:
-- record it without the send).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return { 'duplicate' }
end
for i = 9, #ARGV do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then
    return { 'refused' }
  end
end
-- One stream entry per decision, its timeline entries one per line.
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'id', ARGV[1], 'e', ARGV[3])
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[4] ~= '' then
  set_wake(KEYS[3], KEYS[5], KEYS[6], ARGV[1], ARGV[4], ARGV[7], ARGV[8])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return { 'recorded' }
