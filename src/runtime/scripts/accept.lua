-- accept.lua: record a new cascade, unless its id is already known. Its
-- timer is armed before (wake.lua `arm`) and its stream entry appended
-- after, on its timer shard.
-- k[1] cascade record  <prefix>:{<id>}:state
-- k[2] receipts hash   <prefix>:{<id>}:receipts
-- a[1] notification id
-- a[2] the record, built by the caller in the current layout (record.lua)
-- a[3] "1" when the cascade is finished already (then kept only for the
--      retention), else "0"
-- a[4] retention ms
-- a[5..] when the state stored already orders the first send: the receipt
--      words that stop this cascade (from the core); a receipt recorded
--      before the notification arrived refuses it, as in commit.lua. None
--      when it orders no send.
-- Returns {'recorded'}, {'duplicate'} for an id already known, or
-- {'refused'} when a stopping receipt refused the send (nothing stored:
-- record it without the send).
local function accept_record(k, a)
  if redis.call('EXISTS', k[1]) == 1 then
    return { 'duplicate' }
  end
  for i = 5, #a do
    if redis.call('HEXISTS', k[2], a[i]) == 1 then
      return { 'refused' }
    end
  end
  redis.call('SET', k[1], a[2])
  if a[3] == '1' then
    redis.call('PEXPIRE', k[1], a[4])
    redis.call('PEXPIRE', k[2], a[4])
  end
  return { 'recorded' }
end
