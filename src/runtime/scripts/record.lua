-- record.lua: prepended to the scripts that read a cascade's record (one
-- string: version, state, notification, timeline, meta; layout: accept.lua).
-- Returns where the version, the state, the notification and the timeline end.
local function record_ends(record)
  local v_end = string.find(record, '\31', 1, true)
  local s_end = string.find(record, '\31', v_end + 1, true)
  local n_end = string.find(record, '\31', s_end + 1, true)
  local t_end = string.find(record, '\31', n_end + 1, true)
  return v_end, s_end, n_end, t_end
end
