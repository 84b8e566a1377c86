-- break: end the current grant of a name, whoever holds it (an operator's
-- override, with admin access; no token needed). The grant goes into the
-- history as broken, with who broke it and why; the name keeps its fence,
-- so the next grant's fence is higher; when callers wait, the lease goes to
-- the queue's head in the same step, as for a release. The broken holder's
-- next renew answers not_found (not_holder once a waiter has it).
--
-- KEYS[1]  the name's hash, PREFIX{NAME} (see common.lua)
-- KEYS[2]  the name's queue of waiters, PREFIX{NAME}:q
-- KEYS[3]  the name's history, PREFIX{NAME}:h
-- KEYS[4]  the events stream, PREFIX + "events" (see common.lua)
-- ARGV[1]  the fence of the grant to break, or "" for whichever is current
-- ARGV[2]  the reason (printable text, checked by the caller)
-- ARGV[3]  who breaks it (a label of the caller's, "" for none)
-- ARGV[4]  the fence retention in milliseconds
-- ARGV[5]  how to tell the head: "p" PUBLISH, "s" SPUBLISH (Redis Cluster)
-- ARGV[6]  how many ended grants the history keeps (0: none)
--
-- Replies
--   {"broken", holder, fence, now_ms, 0, "", "", granted_ms}
--                                        ended; nobody waited; granted_ms is
--                                        when the broken grant began
--   {"broken", holder, fence, now_ms, new_fence, wid, client, granted_ms}
--                                        ended, and granted to the waiter wid
--                                        of the Client client, with new_fence
--   {"not_holder", holder, fence, pttl_ms, now_ms}  ARGV[1] is not the current
--                                        grant's fence; nothing changed
--   {"not_found"}                        no live grant (an expired one goes
--                                        into the history, as expired)
--   an error reply, nothing changed: the fence is corrupt
--
-- Events: broken (by, reason), then granted for a waiter's grant; expired
-- for a grant found expired.
hist_max = tonumber(ARGV[6]) or 0 -- common.lua
events_key = KEYS[4] -- common.lua
local cur, live, lerr = load(ARGV[4]) -- common.lua
if lerr then
  return redis.error_reply(lerr)
end
if not live then
  if cur[7] then
    -- Free, with waiters: their turn, as an acquire would give it.
    local _, herr = hand_over(cur, ARGV[5], ARGV[4])
    if herr then
      return redis.error_reply(herr)
    end
  end
  return {'not_found'}
end
if ARGV[1] ~= '' and ARGV[1] ~= cur[3] then
  return {'not_holder', cur[4] or '', tonumber(cur[3]), tonumber(cur[2]) - now_ms, now_ms}
end
local holder, fence, granted = cur[4] or '', tonumber(cur[3]), tonumber(granted_at(cur))
local function ended()
  emit('broken', now_ms, cur[3], cur[4], nil, ARGV[3], ARGV[2]) -- common.lua
end
if cur[7] then
  local got, err = hand_over(cur, ARGV[5], ARGV[4], ended)
  if err then
    return redis.error_reply(err)
  end
  if got then
    record(cur, 'broken', now_ms, ARGV[4], ARGV[3], ARGV[2]) -- common.lua
    return {'broken', holder, fence, now_ms, got[4], got[1], got[2], granted}
  end
else
  ended()
end
record(cur, 'broken', now_ms, ARGV[4], ARGV[3], ARGV[2])
end_grant(ARGV[4]) -- common.lua
return {'broken', holder, fence, now_ms, 0, '', '', granted}
