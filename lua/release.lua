-- release: end a lease, only for the holder of its token (compare-and-end).
-- When callers wait for it, the lease goes to the queue's head in the same
-- step (a new grant with a new fence, told on the head's channel); else the
-- grant's fields go and the name keeps only its fence, for the retention.
--
-- KEYS[1]  the name's hash, PREFIX{NAME} (see common.lua)
-- KEYS[2]  the name's queue of waiters, PREFIX{NAME}:q
-- KEYS[3]  the name's history, PREFIX{NAME}:h
-- KEYS[4]  the events stream, PREFIX + "events" (see common.lua)
-- ARGV[1]  token of the caller
-- ARGV[2]  the fence retention in milliseconds
-- ARGV[3]  how to tell the head: "p" PUBLISH, "s" SPUBLISH (Redis Cluster)
-- ARGV[4]  how many ended grants the history keeps (0: none)
-- ARGV[5]  the exit code of the command run under the lease, "" for none
-- ARGV[6]  how long that command ran, in ms, "" for none
--
-- The grant ended goes into the history: released, or handed_over when a
-- waiter got the lease; a grant found expired, as expired. Events:
-- released (also when handed over), then granted for the waiter's grant;
-- expired for a grant found expired.
--
-- Replies
--   {"released"}                                    ended; nobody waited
--   {"handed", fence, now_ms, wid, client}          ended, and granted to the waiter
--                                                   wid of the Client client
--   {"not_holder", holder, fence, pttl_ms, now_ms}  another token holds it; nothing changed
--   {"not_found"}                                   no lease (released or expired); a
--                                                   lease that expired with waiters
--                                                   goes to the head now
--   an error reply, nothing changed: the fence is corrupt (only when handing over)
hist_max = tonumber(ARGV[4]) or 0 -- common.lua
events_key = KEYS[4] -- common.lua
local cur, live, lerr = load(ARGV[2]) -- common.lua
if lerr then
  return redis.error_reply(lerr)
end
if live and cur[1] ~= ARGV[1] then
  return {'not_holder', cur[4] or '', tonumber(cur[3]), tonumber(cur[2]) - now_ms, now_ms}
end
local function ended()
  emit('released', now_ms, cur[3], cur[4]) -- common.lua
end
if cur[7] then
  local got, err = hand_over(cur, ARGV[3], ARGV[2], live and ended) -- common.lua
  if err then
    return redis.error_reply(err)
  end
  if not live then
    return {'not_found'}
  end
  if got then
    record(cur, 'handed_over', now_ms, ARGV[2], '', '', ARGV[5], ARGV[6]) -- common.lua
    return {'handed', got[4], now_ms, got[1], got[2]}
  end
elseif not live then
  return {'not_found'}
else
  ended()
end
record(cur, 'released', now_ms, ARGV[2], '', '', ARGV[5], ARGV[6])
return end_grant(ARGV[2]) -- common.lua
