-- raise: lift the fence of a grant to a given value on one master of a Redlock
-- quorum, so that every master of the quorum holds the same fence (the largest
-- any of them granted) and the next grant on any quorum exceeds it.
--
-- KEYS[1]  the lease hash, PREFIX{NAME}
-- KEYS[2]  the fence counter, PREFIX{NAME}:fence
-- ARGV[1]  token of the grant
-- ARGV[2]  the fence to lift to (decimal digits)
--
-- Replies
--   {"raised", fence}  the grant's fence and the counter are now at least ARGV[2]
--   {"not_holder"}     the lease is gone or held by another token; nothing changed
local cur = redis.call('HMGET', KEYS[1], 't', 'f')
if cur[1] ~= ARGV[1] then
  return {'not_holder'}
end
local f = tonumber(ARGV[2])
if tonumber(cur[2]) < f then
  redis.call('HSET', KEYS[1], 'f', ARGV[2])
end
local counter = redis.call('GET', KEYS[2])
if not counter or tonumber(counter) < f then
  redis.call('SET', KEYS[2], ARGV[2])
end
return {'raised', f}
