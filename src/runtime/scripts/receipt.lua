-- receipt.lua: record a receipt on the cascade's keys; the cascade is then
-- woken on its shard so it decides at once (woken.lua).
-- record_key   <prefix>:{<id>}:state (layout: record.lua)
-- receipts_key   <prefix>:{<id>}:receipts
-- data_key   <prefix>:{<id>}:data: key -> value recorded with receipts
-- event: the receipt's word   now: ms   entry: its timeline entry
-- data_max: most keys the data hash may hold; data that would take it past
--   that is refused whole ({'data_full', keys held}), nothing recorded
-- args[first..]: the receipt's data, key and value pairs (checked by the
--   caller), merged into data_key whenever the notification exists, also
--   with an event already recorded (a second `called` may correct a slot);
--   a later write of a key wins
-- The first time of an event is kept, except `failed`, whose latest time
-- counts (it escalates the step that is current when it arrives).
-- Returns {'recorded'}, {'already'} when the event was already recorded,
-- {'unknown'} for an unknown notification, {'data_full', keys held} (see
-- data_max), or {'unreadable', why} when its record cannot be read
-- (nothing stored then).
local function receipt_record(record_key, receipts_key, data_key, event, now, entry, data_max,
                              args, first)
  local record, reply = load_record(record_key, 'unknown')
  if not record then
    return reply
  end
  local ttl = redis.call('PTTL', record_key)
  if #args >= first then
    local held = redis.call('HLEN', data_key)
    local added = 0
    for i = first, #args, 2 do
      if redis.call('HEXISTS', data_key, args[i]) == 0 then
        added = added + 1
      end
    end
    if held + added > tonumber(data_max) then
      return { 'data_full', held }
    end
    redis.call('HSET', data_key, unpack(args, first))
    -- Kept as long as the record: a finished one's retention, else until
    -- the commit that finishes it sets it (commit.lua).
    if ttl > 0 then
      redis.call('PEXPIRE', data_key, ttl)
    end
  end
  local fresh
  if event == 'failed' then
    redis.call('HSET', receipts_key, event, now)
    fresh = 1
  else
    fresh = redis.call('HSETNX', receipts_key, event, now)
  end
  if fresh == 0 then
    return { 'already' }
  end
  if ttl > 0 then
    redis.call('PEXPIRE', receipts_key, ttl)
  end
  -- Append the entry to the record's timeline.
  if record[4] ~= '' then
    record[4] = record[4] .. '\n' .. entry
  else
    record[4] = entry
  end
  redis.call('SET', record_key, write_record(record), 'KEEPTTL')
  return { 'recorded' }
end
