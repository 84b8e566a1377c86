-- leave: take a waiter that gives up out of the name's queue. A lease that
-- was handed to it meanwhile is released in turn, to the next waiter if
-- one listens, so no grant is left that nobody holds the token of. When the
-- waiter was the head and another holds the lease, the next waiter is told
-- it is the head now ("WID h TTL_MS", as hand_over tells it), so that it
-- takes the lease at the holder's expiry, not a second after.
--
-- KEYS[1]  the name's hash, PREFIX{NAME} (see common.lua)
-- KEYS[2]  the name's queue of waiters, PREFIX{NAME}:q
-- KEYS[3]  the name's history, PREFIX{NAME}:h
-- KEYS[4]  the events stream, PREFIX + "events" (see common.lua)
-- ARGV[1]  the waiter's token, or "" to take the entry out and release nothing
--          (a Redlock's waiter, whose grants the Redlock round undoes itself)
-- ARGV[2]  the waiter's queue entry, as acquire.lua queued it
-- ARGV[3]  the fence retention in milliseconds
-- ARGV[4]  how to tell a head: "p" PUBLISH, "s" SPUBLISH (Redis Cluster)
-- ARGV[5]  how many ended grants the history keeps (0: none)
--
-- Replies
--   {"left", n}         n: 1 when the entry was queued, 0 when it was not
--                       (handed over or never queued)
--   {"released"}        the lease had been handed to the waiter: it is released
--   {"handed", fence, now_ms, wid, client}  ... and granted to the next waiter
--   an error reply: the fence is corrupt (the entry is gone; the lease stays)
--
-- Events: as for release (released, granted), and expired for a grant
-- found expired.
local head = redis.call('LINDEX', KEYS[2], 0) == ARGV[2]
local n = redis.call('LREM', KEYS[2], 1, ARGV[2])
hist_max = tonumber(ARGV[5]) or 0 -- common.lua
events_key = KEYS[4] -- common.lua
local cur, live, lerr = load(ARGV[3]) -- common.lua
if lerr then
  return redis.error_reply(lerr)
end
if live and cur[1] ~= ARGV[1] then
  if head then
    local next = redis.call('LINDEX', KEYS[2], 0)
    local nwid, nclient = string.match(next or '', '^([^\n]*)\n([^\n]*)\n')
    if nwid then
      announce(ARGV[4], KEYS[1] .. ':w:' .. nclient, nwid .. ' h ' .. digits(tonumber(cur[2]) - now_ms)) -- common.lua
    end
  end
  return {'left', n}
end
local function ended()
  emit('released', now_ms, cur[3], cur[4]) -- common.lua
end
local told = false
if cur[7] then
  -- Free (expired, or the waiter's own): the next waiter's turn.
  local got, err = hand_over(cur, ARGV[4], ARGV[3], live and ended) -- common.lua
  told = live
  if err then
    return redis.error_reply(err)
  end
  if got and live then
    record(cur, 'handed_over', now_ms, ARGV[3]) -- common.lua
    return {'handed', got[4], now_ms, got[1], got[2]}
  end
end
if not live then
  return {'left', n}
end
if not told then
  ended()
end
record(cur, 'released', now_ms, ARGV[3])
return end_grant(ARGV[3]) -- common.lua
