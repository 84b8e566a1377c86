-- raise: set the fence of a grant, on one master of a Redlock quorum, to the
-- fence the quorum decided (the largest any of its masters granted), and mark
-- it decided, so that every master of the quorum holds the same fence and the
-- next grant on any quorum exceeds it.
--
-- KEYS[1]  the name's hash, PREFIX{NAME} (see common.lua)
-- ARGV[1]  token of the grant
-- ARGV[2]  the decided fence (decimal digits)
--
-- Field q of the hash is the decided fence. Only this script writes it, so a
-- master whose grant was never decided (its acquire landed after the quorum
-- was made, or this script never reached it) has none, and Redlock tells the
-- grant's own fence from such a master's by it. The grant's fence f is set to
-- ARGV[2] even when it is higher (a late grant of the same token, with a
-- fence of its own, is brought into line), but never below a decided fence
-- (q higher than ARGV[2] stays). When f goes down, field c keeps the fence
-- it had, so the next grant here still exceeds it (see next_fence).
--
-- Replies
--   {"raised", fence}  the grant's fence f and q are now fence: ARGV[2], or the
--                      higher fence decided before
--   {"not_holder"}     the lease is gone (released or expired: the hash keeps t
--                      after e) or held by another token; nothing changed
local cur = redis.call('HMGET', KEYS[1], 't', 'q', 'f', 'c', 'e', 'g')
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if cur[1] ~= ARGV[1] or (tonumber(cur[5]) or 0) <= now_ms then
  return {'not_holder'}
end
local d = ARGV[2]
if cur[2] and tonumber(cur[2]) > tonumber(d) then
  d = cur[2]
end
local f = tonumber(d)
local set = {'f', d, 'q', d}
if cur[3] and tonumber(cur[3]) > f and not (cur[4] and tonumber(cur[4]) >= tonumber(cur[3])) then
  set[#set + 1] = 'c'; set[#set + 1] = cur[3]
end
if not cur[6] and cur[3] and cur[3] ~= d then
  -- The grant's start was its fence in µs (see common.lua's g): keep it.
  set[#set + 1] = 'g'; set[#set + 1] = string.format('%.0f', math.floor(tonumber(cur[3]) / 1000))
end
redis.call('HSET', KEYS[1], unpack(set))
return {'raised', f}
