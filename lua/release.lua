-- release: end a lease, only for the holder of its token (compare-and-delete).
-- When callers wait for it, either hand it straight to the releasing client's
-- next waiter or delete it and tell the waiters that it is free.
--
-- KEYS[1]  the lease hash, PREFIX{NAME}
-- KEYS[2]  the fence counter, PREFIX{NAME}:fence (used only to hand over)
-- ARGV[1]  token of the caller
-- ARGV[2]  how to announce the release, with the released fence as the message, on
--          the channel KEYS[1]..":released" (PREFIX{NAME}:released): "p" with PUBLISH,
--          "s" with SPUBLISH (Redis Cluster, sharded pub/sub), "" not at all
-- ARGV[3]  id of the caller's client when it has a waiter for this lease to
--          hand it to, else "" (or absent; then ARGV[4..7] are absent too)
-- ARGV[4]  the waiter's token
-- ARGV[5]  the waiter's holder label ("" for none)
-- ARGV[6]  the waiter's metadata ("" for none)
-- ARGV[7]  the waiter's ttl in milliseconds
--
-- Only a lease that waiting callers have marked (field w, see acquire.lua)
-- is announced. It is handed over when it is unmarked or marked by the
-- caller's own client only: a waiter of another client gets its chance
-- through the announcement instead, so no process keeps a lease to itself
-- while others wait. Handing over grants the lease as acquire.lua does, with
-- a new fence, marked by the caller's client (its other waiters may wait
-- behind).
--
-- An empty holder is not stored (see acquire.lua): nil reads as "".
-- next_fence comes from fence.lua, which package lua puts in front of this file.
--
-- Replies
--   {"released"}                                    deleted (and announced if marked); also
--                                                   when a hand-over could not get a fence
--   {"handed", fence, now_ms}                       granted to the waiter ARGV[4]
--   {"not_holder", holder, fence, pttl_ms, now_ms}  another token holds it; nothing changed
--   {"not_found"}                                   no lease (released or expired)
local cur = redis.call('HMGET', KEYS[1], 't', 'h', 'f', 'w', 'm')
if not cur[1] then
  return {'not_found'}
end
if cur[1] ~= ARGV[1] then
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  return {'not_holder', cur[2] or '', tonumber(cur[3]), redis.call('PTTL', KEYS[1]), now_ms}
end

local client = ARGV[3] or ''
local fence, digits, now_us
if client ~= '' and (not cur[4] or cur[4] == client) then
  local now = redis.call('TIME')
  now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
  -- A counter that cannot give a fence (see fence.lua) changes nothing
  -- here: the lease is released as if nobody waited, and the waiter's own
  -- attempt reports the fault.
  fence, digits = next_fence(KEYS[2], now_us) -- fence.lua, as acquire.lua
end
if fence then
  local set = {'t', ARGV[4], 'f', digits, 'l', ARGV[7]}
  if ARGV[5] ~= '' then
    set[#set + 1] = 'h'
    set[#set + 1] = ARGV[5]
  end
  if ARGV[6] ~= '' then
    set[#set + 1] = 'm'
    set[#set + 1] = ARGV[6]
  end
  set[#set + 1] = 'w'
  set[#set + 1] = client
  -- Overwrite the hash in place (t, f, l, w and the waiter's h and m) and
  -- drop only the releaser's holder or metadata that the waiter lacks:
  -- cheaper than deleting the key and making it anew.
  redis.call('HSET', KEYS[1], unpack(set))
  local stale = {}
  if cur[2] and ARGV[5] == '' then
    stale[#stale + 1] = 'h'
  end
  if cur[5] and ARGV[6] == '' then
    stale[#stale + 1] = 'm'
  end
  if #stale > 0 then
    redis.call('HDEL', KEYS[1], unpack(stale))
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  return {'handed', fence, math.floor(now_us / 1000)}
end

redis.call('DEL', KEYS[1])
if cur[4] then
  if ARGV[2] == 'p' then
    redis.call('PUBLISH', KEYS[1] .. ':released', cur[3])
  elseif ARGV[2] == 's' then
    redis.call('SPUBLISH', KEYS[1] .. ':released', cur[3])
  end
end
return {'released'}
