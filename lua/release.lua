-- release: delete a lease, only for the holder of its token (compare-and-delete),
-- and tell waiters on this name that it is free.
--
-- KEYS[1]  the lease hash, PREFIX{NAME}
-- ARGV[1]  token of the caller
-- ARGV[2]  how to announce the release, with the released fence as the message, on
--          the channel KEYS[1]..":released" (PREFIX{NAME}:released): "p" with PUBLISH,
--          "s" with SPUBLISH (Redis Cluster, sharded pub/sub), "" not at all
--
-- An empty holder is not stored (see acquire.lua): nil reads as "".
--
-- Replies
--   {"released"}                                    deleted (and announced)
--   {"not_holder", holder, fence, pttl_ms, now_ms}  another token holds it; nothing changed
--   {"not_found"}                                   no lease (released or expired)
local cur = redis.call('HMGET', KEYS[1], 't', 'h', 'f')
if not cur[1] then
  return {'not_found'}
end
if cur[1] ~= ARGV[1] then
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  return {'not_holder', cur[2] or '', tonumber(cur[3]), redis.call('PTTL', KEYS[1]), now_ms}
end
redis.call('DEL', KEYS[1])
if ARGV[2] == 'p' then
  redis.call('PUBLISH', KEYS[1] .. ':released', cur[3])
elseif ARGV[2] == 's' then
  redis.call('SPUBLISH', KEYS[1] .. ':released', cur[3])
end
return {'released'}
