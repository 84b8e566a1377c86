-- expire: record the expiry of one grant now, rather than when the next
-- script touches the name: the server's expiry watcher calls it when a
-- grant it learned of from the events passes its expiry, so that the
-- expired event comes within a second of it. It changes nothing unless the
-- grant of that fence is still the name's, and has expired; then it is
-- recorded as any script records it (record_expiry: the history, and an
-- expired event), and a queue's head gets the lease, as a release would
-- give it.
--
-- KEYS[1]  the name's hash, PREFIX{NAME} (see common.lua)
-- KEYS[2]  the name's queue of waiters, PREFIX{NAME}:q
-- KEYS[3]  the name's history, PREFIX{NAME}:h
-- KEYS[4]  the events stream, PREFIX + "events" (see common.lua)
-- ARGV[1]  the fence of the grant
-- ARGV[2]  the fence retention in milliseconds
-- ARGV[3]  how to tell the head: "p" PUBLISH, "s" SPUBLISH (Redis Cluster)
-- ARGV[4]  how many ended grants the history keeps (0: none)
--
-- Replies
--   {"expired"}   recorded now
--   {"none"}      not that grant, not expired, or recorded already (or
--                 nothing to record it in: no history and nobody watching)
--   an error reply, nothing changed: the fence is corrupt
hist_max = tonumber(ARGV[4]) or 0 -- common.lua
events_key = KEYS[4] -- common.lua
local cur = redis.call('HMGET', KEYS[1], unpack(FIELDS))
if not cur[1] or cur[3] ~= ARGV[1] or (tonumber(cur[2]) or 0) > now_ms then
  return {'none'}
end
local err = record_expiry(cur, ARGV[2]) -- common.lua
if err then
  return redis.error_reply(err)
end
if cur[1] then
  return {'none'}
end
if cur[7] then
  local _, herr = hand_over(cur, ARGV[3], ARGV[2]) -- common.lua
  if herr then
    return redis.error_reply(herr)
  end
end
return {'expired'}
