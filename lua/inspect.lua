-- inspect: read a lease in one step, for get, list and verify. It changes nothing
-- and never returns the token: it only says whether a given token matches.
--
-- KEYS[1]  the lease hash, PREFIX{NAME}
-- ARGV[1]  a token to compare with the holder's ("" to compare nothing)
--
-- An empty holder or metadata is not stored (see acquire.lua): nil reads as "".
--
-- Replies
--   {"held", holder, fence, pttl_ms, now_ms, metadata, match}
--       match is 1 when ARGV[1] is the holder's token, else 0
--   {"not_found"}  no lease (released or expired)
local cur = redis.call('HMGET', KEYS[1], 't', 'h', 'f', 'm')
if not cur[1] then
  return {'not_found'}
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local match = 0
if ARGV[1] ~= '' and cur[1] == ARGV[1] then
  match = 1
end
return {'held', cur[2] or '', tonumber(cur[3]), redis.call('PTTL', KEYS[1]), now_ms, cur[4] or '', match}
