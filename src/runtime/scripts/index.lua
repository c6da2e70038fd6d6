-- index.lua: keep a send's provider message id, so the provider's
-- callbacks find the notification and step (runtime/store/provider_index.rs).
-- Its own call on a cluster (its key has a tag of its own), made before the
-- decision that records the send is stored: the send went out either way.
-- key: a key per message id   <prefix>:pmid:{<channel>:<message id>}, or
--   the day's hash of a bucket of peers (VK)   <prefix>:peers:{…}:<day>
-- peer: its field in that hash, or "" for a key
-- value: for a key "<step>\t<notification id>"; for a peer
--   "<message id> <step> <notification id>", appended to its field
-- ttl: the key's time to live, seconds
local function index_send(key, peer, value, ttl)
  if peer == '' then
    redis.call('SET', key, value, 'EX', ttl)
  else
    local sent = redis.call('HGET', key, peer)
    if sent then
      sent = sent .. ' ' .. value
    else
      sent = value
    end
    redis.call('HSET', key, peer, sent)
    redis.call('EXPIRE', key, ttl)
  end
  return { 'indexed' }
end
