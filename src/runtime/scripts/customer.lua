-- customer.lua: a customer's recent notifications, for the customer
-- timeline API: id -> when it was accepted (ms), the newest `keep` kept,
-- the whole set kept for `ttl` ms after its latest notification.
local function index_customer(key, id, now, keep, ttl)
  redis.call('ZADD', key, now, id)
  redis.call('ZREMRANGEBYRANK', key, 0, -tonumber(keep) - 1)
  redis.call('PEXPIRE', key, ttl)
end
