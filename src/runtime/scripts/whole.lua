-- whole.lua: on one Redis server every key lives together, so the parts of
-- an operation (the cascade's keys, its timer shard, the provider index)
-- run as one script: one round trip, and atomic. On a Redis Cluster each
-- part is a call of its own, made in the order the parts' headers give
-- (runtime/store/call.rs). The parts' KEYS and ARGV come one after another;
-- the last ARGV gives their sizes, "<keys> <args>" for each part in order.

-- The parts of this call, each as { k = its keys, a = its args }.
local function split_call()
  local sizes = {}
  for n in string.gmatch(ARGV[#ARGV], '%d+') do
    sizes[#sizes + 1] = tonumber(n)
  end
  local parts, ki, ai = {}, 0, 0
  for i = 1, #sizes, 2 do
    local k, a = {}, {}
    for j = 1, sizes[i] do
      k[j] = KEYS[ki + j]
    end
    for j = 1, sizes[i + 1] do
      a[j] = ARGV[ai + j]
    end
    ki, ai = ki + sizes[i], ai + sizes[i + 1]
    parts[#parts + 1] = { k = k, a = a }
  end
  return parts
end

-- Parts: the timer (none when finished at once), the record, the stream
-- entry (stream; id, entries, max length).
local function accept_whole()
  local p = split_call()
  local r = accept_record(p[2].k, p[2].a)
  if r[1] == 'recorded' then
    if #p[1].k > 0 then
      arm(p[1].k, p[1].a)
    end
    append_events(p[3].k[1], p[3].a[1], p[3].a[2], p[3].a[3])
  end
  return r
end

-- Parts: the provider index (none without a send to index), the record,
-- the timer.
local function commit_whole()
  local p = split_call()
  local r = commit_record(p[2].k, p[2].a)
  if r[1] == 'done' then
    if #p[1].k > 0 then
      index_send(p[1].k, p[1].a)
    end
    p[3].a[1] = r[3]
    settle(p[3].k, p[3].a)
  end
  return r
end

-- Parts: the record, the timer. A state that moved on under this claim's
-- lease (its writer left the lease alone) is woken now, to be decided
-- afresh, rather than left to lapse.
local function touch_whole()
  local p = split_call()
  local r = touch_record(p[1].k, p[1].a)
  if r[1] == 'set' then
    p[2].a[1] = r[2]
    settle(p[2].k, p[2].a)
  elseif r[1] == 'moved_on' and p[2].a[8] ~= '' then
    p[2].a[1] = p[2].a[2]
    settle(p[2].k, p[2].a)
  end
  return r
end

-- Parts: the record, the timer.
local function receipt_whole()
  local p = split_call()
  local r = receipt_record(p[1].k, p[1].a)
  if r[1] == 'recorded' then
    woken(p[2].k, p[2].a)
  end
  return r
end
