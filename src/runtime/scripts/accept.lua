-- accept.lua: record a new cascade, unless its id is already known.
-- KEYS[1] cascade record  cascade:{<id>}:state
-- KEYS[2] receipts hash   cascade:{<id>}:receipts
-- KEYS[3] timer shard     cascade:timers:{<n>}
-- KEYS[4] events stream   cascade:events
-- KEYS[5] the shard's index of far slots   cascade:later:{<n>} (wake.lua)
-- ARGV[1] notification id      ARGV[2] cascade state (runtime/record.rs)
-- ARGV[3] notification (JSON)  ARGV[4] "<policy snapshot hash>\t<time zone or empty>"
-- ARGV[5] wake-up ms, or "" when already finished
-- ARGV[6] retention ms         ARGV[7] events stream max length
-- ARGV[8] when the state stored already orders the first send: the stopping
--         receipt words, comma-separated (a receipt recorded before the
--         notification arrived refuses it, as in commit.lua); else ""
-- ARGV[9] now + the horizon, ms   ARGV[10] slot length, ms (wake.lua)
-- ARGV[11..] timeline entries (runtime/record.rs), also appended to the events stream
-- The record is one string: version, state, notification, timeline (entries
-- one per line) and the meta line, separated by \31 (unit separator, which
-- JSON never holds unescaped and the state and entries escape). One string
-- costs Redis far less than a hash of long values.
-- Returns 1 when recorded, 0 for a duplicate id, 2 when a stopping receipt
-- refused the send (nothing stored: record it without the send).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if ARGV[8] ~= '' then
  if redis.call('HEXISTS', KEYS[2], 'cancelled') == 1 then
    return 2
  end
  for word in string.gmatch(ARGV[8], '[^,]+') do
    if redis.call('HEXISTS', KEYS[2], word) == 1 then
      return 2
    end
  end
end
local timeline = table.concat(ARGV, '\n', 11)
-- One stream entry per decision, its timeline entries one per line.
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'id', ARGV[1], 'e', timeline)
redis.call('SET', KEYS[1], table.concat({ '1', ARGV[2], ARGV[3], timeline, ARGV[4] }, '\31'))
if ARGV[5] ~= '' then
  set_wake(KEYS[3], KEYS[5], ARGV[1], ARGV[5], ARGV[9], ARGV[10])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
return 1
