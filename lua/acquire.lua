-- acquire: take a lease if nobody holds it (insert-if-missing with a TTL);
-- when somebody does, answer how long their lease still lives, and queue
-- the caller when it will wait.
--
-- KEYS[1]  the name's hash, PREFIX{NAME} (see common.lua)
-- KEYS[2]  the name's queue of waiters, PREFIX{NAME}:q
-- KEYS[3]  the name's history, PREFIX{NAME}:h
-- KEYS[4]  the events stream, PREFIX + "events" (see common.lua)
-- ARGV[1]  token of the caller
-- ARGV[2]  holder label ("" for none)
-- ARGV[3]  metadata ("" for none)
-- ARGV[4]  ttl in milliseconds (an integer > 0, checked by the caller)
-- ARGV[5]  the fence retention in milliseconds
-- ARGV[6]  the caller's queue entry (see common.lua) when it will wait for
--          the lease, else ""
-- ARGV[7]  how to tell a waiter that it was handed the lease: "p" PUBLISH,
--          "s" SPUBLISH (Redis Cluster); always given, as a call that does
--          not wait may hand the lease over too
-- ARGV[8]  how many ended grants the history keeps (0: none)
-- ARGV[9], ARGV[10] only with an entry:
-- ARGV[9]  how long the queue must live at least, in ms, when the caller joins it
-- ARGV[10] "1" when the caller may be queued already (an attempt after the
--          first): it keeps its place, and is not queued again when its
--          entry is gone (position -2)
--
-- A grant found expired goes into the history first (record_expiry).
-- Events: granted for a new grant (the caller's, or a waiter's that a
-- hand-over made), renewed for an idempotent re-grant, expired for a
-- grant found expired.
-- A free lease with waiters goes to the queue's head first (hand_over), so
-- nobody overtakes a waiter; then the caller is answered as for a held one.
--
-- Replies
--   {"granted", fence, now_ms, 0}  a new grant with a new fence, for ARGV[4] ms
--   {"granted", fence, now_ms, 1}  the caller's token already held it: same fence,
--                                  TTL/holder/metadata from this call
--   {"held", holder, fence, pttl_ms, now_ms, position}
--                                  held by another (or free, but with more
--                                  dead waiters ahead than one call drops:
--                                  holder "", pttl 1). position: the caller's
--                                  place in the queue (0 the head), -1
--                                  when it does not wait, -2 when it
--                                  attempted before (ARGV[10]) but is no
--                                  longer queued; nothing else changed
--                                  but a hand-over to the head
--   an error reply, nothing changed: the fence is corrupt or at 2^53 - 1
local token, holder, metadata, ttl, retention = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local entry = ARGV[6] or ''
hist_max = tonumber(ARGV[8]) or 0 -- common.lua
events_key = KEYS[4] -- common.lua
local cur, live, err = load(retention) -- common.lua
if err then
  return redis.error_reply(err)
end
local queued = cur[7]

if live and cur[1] == token then
  -- Idempotent: the same grant, with this call's TTL, holder and metadata.
  local e = now_ms + tonumber(ttl)
  local set = {'e', digits(e), 'l', ttl}
  if holder ~= '' then set[#set + 1] = 'h'; set[#set + 1] = holder end
  if metadata ~= '' then set[#set + 1] = 'm'; set[#set + 1] = metadata end
  redis.call('HSET', KEYS[1], unpack(set))
  if (cur[4] and holder == '') or (cur[5] and metadata == '') then
    local stale = {}
    if cur[4] and holder == '' then stale[#stale + 1] = 'h' end
    if cur[5] and metadata == '' then stale[#stale + 1] = 'm' end
    redis.call('HDEL', KEYS[1], unpack(stale))
  end
  redis.call('PEXPIREAT', KEYS[1], e + tonumber(retention))
  emit('renewed', now_ms, cur[3], holder, ttl) -- common.lua
  return {'granted', tonumber(cur[3]), now_ms, 1}
end

local busy = false -- more dead waiters than one call drops: live ones may be behind them
if not live and cur[7] then
  local got, err, more = hand_over(cur, ARGV[7], retention) -- common.lua
  if err then
    return redis.error_reply(err)
  end
  busy = more
  if got then
    if got[3] == token then
      -- The caller was the head: its attempt took the lease.
      return {'granted', got[4], now_ms, 0}
    end
    live = true
    cur = redis.call('HMGET', KEYS[1], 't', 'e', 'f', 'h')
    queued = '1'
  end
end

if not live and not busy then
  local fence, fd = next_fence(cur[3], cur[8]) -- common.lua
  if not fence then
    return redis.error_reply(fd)
  end
  grant(cur, token, holder, metadata, ttl, fd, retention)
  emit('granted', now_ms, fd, holder, ttl)
  return {'granted', fence, now_ms, 0}
end

local position = -1
if entry ~= '' then
  if ARGV[10] == '1' then
    -- Not queued any more (a hand-over dropped it while its client did not
    -- listen, or it left): -2, and nothing queued, so that an attempt
    -- that a stalled network delivers after its waiter left cannot queue
    -- that waiter again; one that still waits joins anew.
    position = redis.call('LPOS', KEYS[2], entry) or -2
    if position >= 0 and not queued then
      -- Queued, but the mark is gone (the hash expired with its retention
      -- while the queue lived on, and a grant made it anew): set it again.
      redis.call('HSET', KEYS[1], 'w', '1')
    end
  end
  if position == -1 then
    position = redis.call('RPUSH', KEYS[2], entry) - 1
    if not queued then
      redis.call('HSET', KEYS[1], 'w', '1')
    end
    if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[9]) then
      redis.call('PEXPIRE', KEYS[2], ARGV[9])
    end
  end
end
if busy then
  -- Free, but not for the caller: waiters may be queued ahead of it.
  return {'held', '', tonumber(cur[3]) or 0, 1, now_ms, position}
end
return {'held', cur[4] or '', tonumber(cur[3]), tonumber(cur[2]) - now_ms, now_ms, position}
