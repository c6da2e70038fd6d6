-- receipt.lua: record a receipt on the cascade's keys; the cascade is then
-- woken on its shard so it decides at once (wake.lua `woken`).
-- k[1] cascade record  <prefix>:{<id>}:state (layout: record.lua)
-- k[2] receipts hash   <prefix>:{<id>}:receipts
-- a[1] notification id   a[2] event word   a[3] now ms   a[4] timeline entry
-- The first time of an event is kept, except `failed`, whose latest time
-- counts (it escalates the step that is current when it arrives).
-- Returns {'recorded'}, {'already'} when the event was already recorded,
-- {'unknown'} for an unknown notification, or {'unreadable', why} when its
-- record cannot be read (nothing stored then).
local function receipt_record(k, a)
  local raw = redis.call('GET', k[1])
  if not raw then
    return { 'unknown' }
  end
  local record, why = read_record(raw)
  if not record then
    return { 'unreadable', why }
  end
  local fresh
  if a[2] == 'failed' then
    redis.call('HSET', k[2], a[2], a[3])
    fresh = 1
  else
    fresh = redis.call('HSETNX', k[2], a[2], a[3])
  end
  if fresh == 0 then
    return { 'already' }
  end
  local ttl = redis.call('PTTL', k[1])
  if ttl > 0 then
    redis.call('PEXPIRE', k[2], ttl)
  end
  -- Append the entry to the record's timeline.
  if record[4] ~= '' then
    record[4] = record[4] .. '\n' .. a[4]
  else
    record[4] = a[4]
  end
  redis.call('SET', k[1], write_record(record), 'KEEPTTL')
  return { 'recorded' }
end
