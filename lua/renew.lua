-- renew: extend a lease, only for the holder of its token.
--
-- KEYS[1]  the lease hash, PREFIX{NAME}
-- ARGV[1]  token of the caller
-- ARGV[2]  new ttl in milliseconds, or "0" to reuse the TTL of the grant's most
--          recent acquire or renew
--
-- An empty holder or metadata is not stored (see acquire.lua): nil reads as "".
--
-- Replies
--   {"renewed", fence, ttl_ms, now_ms, holder, metadata}
--   {"not_holder", holder, fence, pttl_ms, now_ms}  another token holds it; nothing changed
--   {"not_found"}                                   no lease (released or expired)
local cur = redis.call('HMGET', KEYS[1], 't', 'h', 'f', 'm', 'l')
if not cur[1] then
  return {'not_found'}
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if cur[1] ~= ARGV[1] then
  return {'not_holder', cur[2] or '', tonumber(cur[3]), redis.call('PTTL', KEYS[1]), now_ms}
end
local ttl = ARGV[2]
if ttl == '0' then
  ttl = cur[5]
else
  redis.call('HSET', KEYS[1], 'l', ttl)
end
redis.call('PEXPIRE', KEYS[1], ttl)
return {'renewed', tonumber(cur[3]), tonumber(ttl), now_ms, cur[2] or '', cur[4] or ''}
