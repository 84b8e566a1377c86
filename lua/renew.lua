-- renew: extend a lease, only for the holder of its token.
--
-- KEYS[1]  the name's hash, PREFIX{NAME} (see common.lua)
-- KEYS[2]  the events stream, PREFIX + "events" (see common.lua): a renew
--          emits renewed
-- ARGV[1]  token of the caller
-- ARGV[2]  new ttl in milliseconds, or "0" to reuse the TTL of the grant's most
--          recent acquire or renew
-- ARGV[3]  the fence retention in milliseconds
-- ARGV[4]  optional: the exit code of the command run under the lease, kept
--          for the history (x) when the grant ends; "" or absent for none
-- ARGV[5]  optional, with ARGV[4]: how long the command ran, in ms (d)
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
if ttl == '0' then
  ttl = cur[6]
end
local e = now_ms + tonumber(ttl)
local set = {'e', digits(e)} -- common.lua
if ARGV[2] ~= '0' then set[#set + 1] = 'l'; set[#set + 1] = ttl end
if (ARGV[4] or '') ~= '' then
  set[#set + 1] = 'x'; set[#set + 1] = ARGV[4]
  set[#set + 1] = 'd'; set[#set + 1] = ARGV[5] or ''
end
redis.call('HSET', KEYS[1], unpack(set))
redis.call('PEXPIREAT', KEYS[1], e + tonumber(ARGV[3]))
events_key = KEYS[2]
emit('renewed', now_ms, cur[3], cur[4], ttl)
return {'renewed', tonumber(cur[3]), tonumber(ttl), now_ms, cur[4] or '', cur[5] or ''}
