-- acquire: take a lease if nobody holds it (insert-if-missing with a TTL);
-- when somebody does, answer how long their lease still lives.
--
-- KEYS[1]  the lease hash, PREFIX{NAME}
-- KEYS[2]  the fence counter, PREFIX{NAME}:fence (never expires)
-- ARGV[1]  token of the caller
-- ARGV[2]  holder label ("" for none)
-- ARGV[3]  metadata ("" for none)
-- ARGV[4]  ttl in milliseconds (an integer > 0, checked by the caller)
-- ARGV[5]  id of the caller's client when the caller will wait for a release,
--          else "" (or absent)
--
-- Replies
--   {"granted", fence, now_ms, 0}  a new grant with a new fence, for ARGV[4] ms
--   {"granted", fence, now_ms, 1}  the caller's token already held it: same fence,
--                                  TTL/holder/metadata from this call
--   {"held", holder, fence, pttl_ms, now_ms}  held by another; nothing changed,
--                                  except the waiter mark below
--   an error reply, nothing changed: the fence counter is corrupt or at 2^53 - 1
--
-- Field w marks a lease whose release must be announced, because callers
-- wait for it (release.lua announces only marked leases): it is the id of
-- the one client whose callers wait, or "*" when callers of several do. A
-- waiting caller marks the lease when it finds it held, and when it is
-- granted it (other callers of its client may wait behind it); the holder's
-- own re-grant and renew keep the mark.
--
-- The hash holds t (token), f (fence), l (TTL in ms), and h (holder) and m
-- (metadata) only when they are not empty: a missing field reads as "", and
-- a bare lease's hash fits a smaller allocation (see docs/engine.md).
--
-- The fence is max(last fence + 1, Redis TIME in microseconds): see
-- next_fence in fence.lua, which package lua puts in front of this file.
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local now_ms = math.floor(now_us / 1000)

-- optional adds this call's holder and metadata to the HSET arguments set,
-- and returns the fields to delete instead because they are empty.
local function optional(set)
  local del = {}
  if ARGV[2] == '' then
    del[#del + 1] = 'h'
  else
    set[#set + 1] = 'h'
    set[#set + 1] = ARGV[2]
  end
  if ARGV[3] == '' then
    del[#del + 1] = 'm'
  else
    set[#set + 1] = 'm'
    set[#set + 1] = ARGV[3]
  end
  return del
end

local waiter = ARGV[5] or ''
local cur = redis.call('HMGET', KEYS[1], 't', 'h', 'f', 'w')
if cur[1] then
  if cur[1] == ARGV[1] then
    local set = {'l', ARGV[4]}
    if waiter ~= '' and not cur[4] then
      set[#set + 1] = 'w'
      set[#set + 1] = waiter
    end
    local del = optional(set)
    redis.call('HSET', KEYS[1], unpack(set))
    if #del > 0 then
      redis.call('HDEL', KEYS[1], unpack(del))
    end
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
    return {'granted', tonumber(cur[3]), now_ms, 1}
  end
  if waiter ~= '' and cur[4] ~= waiter and cur[4] ~= '*' then
    redis.call('HSET', KEYS[1], 'w', cur[4] and '*' or waiter)
  end
  return {'held', cur[2] or '', tonumber(cur[3]), redis.call('PTTL', KEYS[1]), now_ms}
end

local fence, digits = next_fence(KEYS[2], now_us) -- fence.lua
if not fence then
  return redis.error_reply(digits)
end
if ARGV[2] == '' and ARGV[3] == '' and waiter == '' then
  -- The common bare lease, without building tables.
  redis.call('HSET', KEYS[1], 't', ARGV[1], 'f', digits, 'l', ARGV[4])
else
  local set = {'t', ARGV[1], 'f', digits, 'l', ARGV[4]}
  optional(set)
  if waiter ~= '' then
    set[#set + 1] = 'w'
    set[#set + 1] = waiter
  end
  redis.call('HSET', KEYS[1], unpack(set))
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'granted', fence, now_ms, 0}
