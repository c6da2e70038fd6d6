-- record.lua: prepended to the scripts that read or rewrite a cascade's
-- record. The layout (runtime/record.rs, which must agree): the tag 'r2',
-- then version, state, notification, timeline (entries one per line) and
-- meta, separated by \31 (unit separator, which JSON never holds
-- unescaped and the state and entries escape). Records of the first layout
-- have no tag and start with the version (a number); they are read, and
-- rewritten in the current layout. Anything else is reported, not guessed at.
local LAYOUT = 'r2'

-- The record's fields { version, state, notification, timeline, meta }, or
-- nil and why it cannot be read.
local function read_record(record)
  local from = 1
  local first = string.find(record, '\31', 1, true)
  if not first then
    return nil, 'the record has no fields'
  end
  local tag = string.sub(record, 1, first - 1)
  if tag == LAYOUT then
    from = first + 1
  elseif not string.find(tag, '^%d+$') then
    return nil, 'the record layout `' .. string.sub(tag, 1, 16) .. '` is unknown'
  end
  local fields = {}
  for i = 1, 4 do
    local at = string.find(record, '\31', from, true)
    if not at then
      return nil, 'the record has fewer than five fields'
    end
    fields[i] = string.sub(record, from, at - 1)
    from = at + 1
  end
  fields[5] = string.sub(record, from)
  return fields
end

-- The record stored at `key` as its fields; or nil and the reply to give:
-- `{absent}` when there is none, `{'unreadable', why}` when it cannot be read.
local function load_record(key, absent)
  local raw = redis.call('GET', key)
  if not raw then
    return nil, { absent }
  end
  local record, why = read_record(raw)
  if not record then
    return nil, { 'unreadable', why }
  end
  return record
end

-- The record of these fields, in the current layout.
local function write_record(fields)
  return LAYOUT .. '\31' .. table.concat(fields, '\31')
end

-- Does the receipts hash `recorded` (word -> true) hold one of the stopping
-- words `stopping` (a list, from the core: `cancelled` is among them)?
local function stopped(recorded, stopping)
  for _, word in ipairs(stopping) do
    if recorded[word] then
      return true
    end
  end
  return false
end

-- How many entries a timeline (one per line) holds. (A find loop: gsub
-- would copy the timeline, three times slower.)
local function count_lines(timeline)
  if timeline == '' then
    return 0
  end
  local n, at = 1, string.find(timeline, '\n', 1, true)
  while at do
    n = n + 1
    at = string.find(timeline, '\n', at + 1, true)
  end
  return n
end
