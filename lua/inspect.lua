-- inspect: read a lease in one step, for get, list and verify. It changes nothing
-- and never returns the token: it only says whether a given token matches.
--
-- KEYS[1]  the name's hash, PREFIX{NAME} (see common.lua)
-- KEYS[2]  the name's queue of waiters, PREFIX{NAME}:q
-- ARGV[1]  a token to compare with the holder's ("" to compare nothing)
--
-- Replies
--   {"held", holder, fence, pttl_ms, now_ms, metadata, match, waiting}
--       match is 1 when ARGV[1] is the holder's token, else 0; waiting is
--       how many entries the queue holds (waiters whose process died
--       count until a hand-over drops them)
--   {"not_found"}  no lease (released or expired)
local cur = redis.call('HMGET', KEYS[1], 't', 'e', 'f', 'h', 'm', 'w')
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if not cur[1] or (tonumber(cur[2]) or 0) <= now_ms then
  return {'not_found'}
end
local match = 0
if ARGV[1] ~= '' and cur[1] == ARGV[1] then
  match = 1
end
local waiting = 0
if cur[6] then
  waiting = redis.call('LLEN', KEYS[2])
end
return {'held', cur[4] or '', tonumber(cur[3]), tonumber(cur[2]) - now_ms, now_ms, cur[5] or '', match, waiting}
