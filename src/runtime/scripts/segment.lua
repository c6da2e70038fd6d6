-- segment.lua: whether a customer segment is counted on its own in a
-- policy's report (runtime/store/report_counts.rs): it is when it is in the
-- policy's set, or the set has room and takes it. The first ones seen win.
-- KEYS[1]: <prefix>:segments:{<policy>}   ARGV: segment, the set's size limit
-- Returns 1 (counted on its own), or the set's members when it is full
-- (`other`): the caller then knows every segment counted on its own.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  return 1
end
if redis.call('SCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('SADD', KEYS[1], ARGV[1])
  return 1
end
return redis.call('SMEMBERS', KEYS[1])
