-- renew: extend a lease, only for the holder of its token.
--
-- KEYS[1]  the name's hash, PREFIX{NAME} (see common.lua)
-- ARGV[1]  token of the caller
-- ARGV[2]  new ttl in milliseconds, or "0" to reuse the TTL of the grant's most
--          recent acquire or renew
-- ARGV[3]  the fence retention in milliseconds
--
-- Replies
--   {"renewed", fence, ttl_ms, now_ms, holder, metadata}
--   {"not_holder", holder, fence, pttl_ms, now_ms}  another token holds it; nothing changed
--   {"not_found"}                                   no lease (released or expired)
local cur = redis.call('HMGET', KEYS[1], 't', 'e', 'f', 'h', 'm', 'l')
if not cur[1] or (tonumber(cur[2]) or 0) <= now_ms then
  return {'not_found'}
end
if cur[1] ~= ARGV[1] then
  return {'not_holder', cur[4] or '', tonumber(cur[3]), tonumber(cur[2]) - now_ms, now_ms}
end
local ttl = ARGV[2]
local e
if ttl == '0' then
  ttl = cur[6]
  e = now_ms + tonumber(ttl)
  redis.call('HSET', KEYS[1], 'e', digits(e)) -- common.lua
else
  e = now_ms + tonumber(ttl)
  redis.call('HSET', KEYS[1], 'e', digits(e), 'l', ttl)
end
redis.call('PEXPIREAT', KEYS[1], e + tonumber(ARGV[3]))
return {'renewed', tonumber(cur[3]), tonumber(ttl), now_ms, cur[4] or '', cur[5] or ''}
