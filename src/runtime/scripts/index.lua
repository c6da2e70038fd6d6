-- index.lua: keep a send's provider message id, so the provider's
-- callbacks find the notification and step (runtime/store/provider_index.rs).
-- Its own call on a cluster (its key has a tag of its own), made before the
-- decision that records the send is stored: the send went out either way.
-- k[1] a key per message id   <prefix>:pmid:{<channel>:<message id>}, or
--      the day's hash of a bucket of peers (VK)   <prefix>:peers:{…}:<day>
-- a[1] the peer (its field in that hash), or "" for a key
-- a[2] for a key "<step>\t<notification id>"; for a peer
--      "<message id> <step> <notification id>", appended to its field
-- a[3] the key's time to live, seconds
local function index_send(k, a)
  if a[1] == '' then
    redis.call('SET', k[1], a[2], 'EX', a[3])
  else
    local sent = redis.call('HGET', k[1], a[1])
    if sent then
      sent = sent .. ' ' .. a[2]
    else
      sent = a[2]
    end
    redis.call('HSET', k[1], a[1], sent)
    redis.call('EXPIRE', k[1], a[3])
  end
  return { 'indexed' }
end
