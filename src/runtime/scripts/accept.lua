-- accept.lua: record a new cascade, unless its id is already known. Its
-- timer is armed before (arm.lua) and its stream entry appended after, on
-- its timer shard.
-- record_key   <prefix>:{<id>}:state      receipts_key   <prefix>:{<id>}:receipts
-- record: built by the caller in the current layout (record.lua)
-- finished: "1" when the cascade is finished already (then kept only for
--   the retention), else "0"   retention: ms
-- words[first..]: when the state stored already orders the first send, the
--   receipt words that stop this cascade (from the core); a receipt
--   recorded before the notification arrived refuses it, as in commit.lua.
--   None when it orders no send.
-- Returns {'recorded'}, {'duplicate'} for an id already known, or
-- {'refused'} when a stopping receipt refused the send (nothing stored:
-- record it without the send).
local function accept_record(record_key, receipts_key, record, finished, retention, words, first)
  if redis.call('EXISTS', record_key) == 1 then
    return { 'duplicate' }
  end
  for i = first, #words do
    if redis.call('HEXISTS', receipts_key, words[i]) == 1 then
      return { 'refused' }
    end
  end
  redis.call('SET', record_key, record)
  if finished == '1' then
    redis.call('PEXPIRE', record_key, retention)
    redis.call('PEXPIRE', receipts_key, retention)
  end
  return { 'recorded' }
end
