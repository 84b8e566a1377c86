-- common: what every script that writes a lease shares (package lua puts
-- this file in front of acquire.lua, release.lua, leave.lua, renew.lua,
-- break.lua and expire.lua).
--
-- A name is one hash, PREFIX{NAME} (KEYS[1]):
--   t  token of the grant         e  its expiry, Redis TIME in ms
--   f  its fence (kept after the grant ends: the name's last fence)
--   l  TTL in ms of its most recent acquire or renew
--   h  holder, m  metadata        (only when not empty: nil reads as "")
--   q  the fence a Redlock quorum decided (raise.lua)
--   c  a fence floor, when raise.lua set f below what this master granted
--   w  "1" while the queue PREFIX{NAME}:q (KEYS[2]) may hold waiters
--   g  when the grant began, Redis TIME in ms, only when its fence is not
--      that time in µs (granted_at below)
--   x  exit code, d duration in ms, of the command run under the grant,
--      when its holder told them before the grant ended (renew with them)
-- A grant is live while t is set and e is after now. The key expires at
-- max(e, end of the grant) + the fence retention (ARGV), so what a name
-- keeps after its last grant is gone after the retention; after that the
-- next fence rests on Redis's clock alone.
--
-- The history PREFIX{NAME}:h (KEYS[3]) is a list of the name's last grants
-- that ended, newest first: the newest hist_max of them (the script's
-- ARGV gives it; 0 keeps none) are the history, and the list is trimmed
-- to them once it is HIST_SLACK longer (one LTRIM every HIST_SLACK + 1
-- ends, not one each), so readers take the first hist_max; each entry
--   kind "\n" fence "\n" granted_ms "\n" ended_ms "\n" exit_code "\n"
--   duration_ms "\n" by "\n" holder "\n" reason
-- where kind is released, handed_over (released with waiters: the lease
-- went to the queue's head), expired or broken (by whom and why); the
-- exit code and duration are "" when the holder told none. The list
-- expires the fence retention after its newest entry. An expiry is
-- recorded by the first script that finds it, with the grant's own expiry
-- as its time, and the grant's t goes then so that it is recorded once;
-- until then a read of the history (history.lua) shows it as expired.
--
-- The events stream PREFIX + "events" (the script's events key, KEYS[4];
-- renew's KEYS[2]) is shared by all names of the prefix: each change of a
-- grant adds one entry, XADD MAXLEN ~ 10000, with fields
--   k kind (granted, renewed, released, expired, broken)
--   n name   f fence   t when, Redis TIME in ms (an expiry's: the grant's e)
--   h holder, l ttl_ms (granted, renewed), b by, r reason (broken), each
--   only when not empty
-- and never a token. Only while the key exists: a watcher keeps it alive
-- (lease.Client.Watch), so that with none a script pays one EXISTS. On a
-- Redis Cluster the caller gives a key of the name's own slot that nobody
-- creates (PREFIX{NAME}:e), so no event is written there.
--
-- The queue is a list of waiters in arrival order, each entry
--   wid "\n" client "\n" ttl_ms "\n" token "\n" holder "\n" metadata
-- (wid and client are ids of the waiter and of its Client, ttl digits, the
-- token of [A-Za-z0-9_-], the holder printable: none holds "\n"; the
-- metadata comes last and may). A lease that becomes free goes to the
-- queue's head in the same script call (hand_over): the head is told on
-- its client's channel PREFIX{NAME}:w:CLIENT, and only a head whose client
-- is still subscribed there (PUBLISH counted a receiver) gets it; one
-- whose process died has no subscription and is skipped. The waiter next
-- in line is told "WID h TTL_MS": it is the head now, and the grant it
-- waits behind ends in TTL_MS unless renewed. An entry whose
-- ttl is 0 is told that the lease is free ("0" as the fence) and dropped,
-- and the hand-over goes on to the next entry: a Redlock's waiter, which
-- takes the lease with a quorum of masters itself.

local MAX_FENCE = 9007199254740991 -- 2^53 - 1: exact in JSON and JavaScript

local now_raw = redis.call('TIME')
local now_us = tonumber(now_raw[1]) * 1000000 + tonumber(now_raw[2])
local now_ms = math.floor(now_us / 1000)

-- The fields every writing script reads of the hash, in this order (cur).
local FIELDS = {'t', 'e', 'f', 'h', 'm', 'q', 'w', 'c', 'g', 'x', 'd'}

-- hist_max is how many ended grants the history keeps; each script that
-- ends grants sets it from its ARGV.
local hist_max = 0

-- HIST_SLACK is how many entries past hist_max the list may hold before
-- record trims it.
local HIST_SLACK = 16

-- events_key is the events stream (see above), set by each script that
-- changes a grant; events_on caches whether it exists (nil: not asked).
local events_key = nil
local events_on = nil

-- watched says whether anyone watches the events: the stream exists. It
-- asks Redis once per script call.
local function watched()
  if events_on == nil then
    events_on = events_key ~= nil and events_key ~= '' and redis.call('EXISTS', events_key) == 1
  end
  return events_on
end

-- emit adds an event of the name of KEYS[1] to the stream while anyone
-- watches: kind, at (ms), fence (digits or a number), and holder, ttl,
-- by, reason when not nil or "".
local function emit(kind, at, fence, holder, ttl, by, reason)
  if not watched() then
    return
  end
  local prefix = string.sub(events_key, 1, #events_key - #'events')
  local ev = {'k', kind, 'n', string.sub(KEYS[1], #prefix + 2, -2), 'f', tostring(fence or ''), 't', tostring(at)}
  if type(fence) == 'number' then ev[6] = string.format('%.0f', fence) end
  if type(at) == 'number' then ev[8] = string.format('%.0f', at) end
  for _, kv in ipairs({{'h', holder}, {'l', ttl}, {'b', by}, {'r', reason}}) do
    if kv[2] and kv[2] ~= '' then
      ev[#ev + 1] = kv[1]; ev[#ev + 1] = tostring(kv[2])
    end
  end
  redis.call('XADD', events_key, 'MAXLEN', '~', '10000', '*', unpack(ev))
end

-- digits prints an integer exactly: tostring() would print 1.7e+15.
local function digits(n)
  return string.format('%.0f', n)
end

-- next_fence returns max(last fence + 1, floor + 1, now_us), where last and
-- floor are the hash's f and c (nil when absent), as a number and as
-- digits; or nil and a message when either holds anything but a fence
-- below 2^53 - 1 (only these scripts write them, always as at most 16
-- digits), so that the caller changes nothing.
local function next_fence(last, floor)
  local fence = now_us
  for _, v in ipairs({last or '0', floor or '0'}) do
    local n = string.match(v, '^%d+$') and #v <= 16 and tonumber(v)
    if not n or n >= MAX_FENCE then
      return nil, 'the fence of ' .. KEYS[1] .. ' holds ' .. string.format('%q', string.sub(v, 1, 40)) ..
        ', not a fence below 2^53-1: no grant can get a higher fence; nothing was changed'
    end
    if n >= fence then
      fence = n + 1
    end
  end
  return fence, digits(fence)
end

-- grant makes the name's hash a new grant (cur is HMGET FIELDS): it
-- overwrites t, f, e, l, sets h and m when given (and g when the fence is
-- not now in µs), and drops the old grant's h, m, q, c, g, x and d that
-- this one lacks.
local function grant(cur, token, holder, metadata, ttl, fence_digits, retention)
  local e = now_ms + tonumber(ttl)
  local set = {'t', token, 'f', fence_digits, 'e', digits(e), 'l', ttl}
  if holder ~= '' then set[#set + 1] = 'h'; set[#set + 1] = holder end
  if metadata ~= '' then set[#set + 1] = 'm'; set[#set + 1] = metadata end
  local at = fence_digits ~= digits(now_us)
  if at then set[#set + 1] = 'g'; set[#set + 1] = digits(now_ms) end
  redis.call('HSET', KEYS[1], unpack(set))
  if (cur[4] and holder == '') or (cur[5] and metadata == '') or cur[6] or cur[8] or (cur[9] and not at) or cur[10] or cur[11] then
    local stale = {}
    if cur[4] and holder == '' then stale[#stale + 1] = 'h' end
    if cur[5] and metadata == '' then stale[#stale + 1] = 'm' end
    if cur[6] then stale[#stale + 1] = 'q' end
    if cur[8] then stale[#stale + 1] = 'c' end
    if cur[9] and not at then stale[#stale + 1] = 'g' end
    if cur[10] then stale[#stale + 1] = 'x' end
    if cur[11] then stale[#stale + 1] = 'd' end
    redis.call('HDEL', KEYS[1], unpack(stale))
  end
  redis.call('PEXPIREAT', KEYS[1], e + tonumber(retention))
  return e
end

-- end_grant ends the live grant: its fields go, and the name keeps its
-- fence (f, and c) for the retention. It returns the reply {"released"}.
local function end_grant(retention)
  redis.call('HDEL', KEYS[1], 't', 'e', 'l', 'h', 'm', 'q', 'g', 'x', 'd')
  redis.call('PEXPIRE', KEYS[1], retention)
  return {'released'}
end

-- granted_at returns, as digits, when the grant in cur began: its g, or
-- else its fence, which is then the grant's Redis TIME in µs.
local function granted_at(cur)
  return cur[9] or digits(math.floor((tonumber(cur[3]) or 0) / 1000))
end

-- record puts the end of the grant in cur (HMGET FIELDS) at the head of
-- the history: kind, ended (ms), and by, reason, exit code and duration
-- (nil or "" for none; the grant's own x and d when the call gives no
-- exit code). It keeps hist_max entries (and up to HIST_SLACK older ones
-- until the next trim), and nothing when hist_max is 0.
local function record(cur, kind, ended, retention, by, reason, code, dur)
  if hist_max <= 0 or not cur[1] then
    return
  end
  if not code or code == '' then
    code, dur = cur[10], cur[11]
  end
  local n = redis.call('LPUSH', KEYS[3], table.concat({kind, cur[3] or '', granted_at(cur), digits(ended),
    code or '', dur or '', by or '', cur[4] or '', reason or ''}, '\n'))
  if n > hist_max + HIST_SLACK then
    redis.call('LTRIM', KEYS[3], 0, hist_max - 1)
  end
  redis.call('PEXPIRE', KEYS[3], retention)
end

-- record_expiry records the grant in cur as expired, at its expiry, when it
-- has one that has passed (in the history, and as an expired event), and
-- drops its token so that no later script records it again (cur[1]
-- becomes nil); with no history kept and nobody watching it changes
-- nothing. It returns nil, or, changing
-- nothing, a message when the fence is corrupt (see next_fence), so that
-- a script that fails on it after this has changed nothing either.
local function record_expiry(cur, retention)
  if not cur[1] or (tonumber(cur[2]) or 0) > now_ms or (hist_max <= 0 and not watched()) then
    return nil
  end
  local ok, err = next_fence(cur[3], cur[8])
  if not ok then
    return err
  end
  record(cur, 'expired', tonumber(cur[2]) or now_ms, retention)
  emit('expired', tonumber(cur[2]) or now_ms, cur[3], cur[4])
  redis.call('HDEL', KEYS[1], 't')
  cur[1] = nil
  return nil
end

-- load reads the name's hash (HMGET FIELDS) and whether its grant is live
-- (an e that is no number: no grant); a grant found expired goes into the
-- history first (record_expiry). It returns cur and live, or nil, nil and
-- a message when the fence is corrupt (nothing changed).
local function load(retention)
  local cur = redis.call('HMGET', KEYS[1], unpack(FIELDS))
  local live = cur[1] and (tonumber(cur[2]) or 0) > now_ms
  if not live then
    local err = record_expiry(cur, retention)
    if err then
      return nil, nil, err
    end
  end
  return cur, live
end

-- announce publishes msg on channel as ARGV says ("s": SPUBLISH for a Redis
-- Cluster, else PUBLISH) and returns how many subscribers received it.
local function announce(how, channel, msg)
  if how == 's' then
    return redis.call('SPUBLISH', channel, msg)
  end
  return redis.call('PUBLISH', channel, msg)
end

-- hand_over gives the free lease (cur as for grant) to the queue's first
-- waiter whose client still listens, dropping the ones before it; ended,
-- when not nil, is called first, once the fence is known good (it emits
-- the end of the grant that frees the lease, so that events come in the
-- order of what happened), and the new grant is emitted as granted. It
-- returns that waiter's {wid, client, token, fence, fence_digits, e}, or
-- nil when the queue is empty (then w is cleared), or nil and a message
-- when the fence is corrupt (nothing changed). At most 1000 dead entries
-- go per call (a bound on the script's time): then it returns nil, nil,
-- true, the lease stays free for the waiters further back (whose own
-- attempts, at most recheck_every apart, drop the rest), and nobody may
-- take it ahead of them.
local function hand_over(cur, how, retention, ended)
  local fence, fd = next_fence(cur[3], cur[8])
  if not fence then
    return nil, fd
  end
  if ended then
    ended()
  end
  for _ = 1, 1000 do
    local entry = redis.call('LPOP', KEYS[2])
    if not entry then
      redis.call('HDEL', KEYS[1], 'w')
      return nil
    end
    local wid, client, ttl, token, holder, metadata =
      string.match(entry, '^([^\n]*)\n([^\n]*)\n(%d+)\n([^\n]*)\n([^\n]*)\n(.*)$')
    if wid and ttl == '0' then
      -- A waiter that only wants to know (a Redlock's, which takes the
      -- lease with a quorum of its own): told "0" as the fence, not granted.
      announce(how, KEYS[1] .. ':w:' .. client, wid .. ' 0 ' .. digits(now_ms))
    elseif wid then
      if announce(how, KEYS[1] .. ':w:' .. client, wid .. ' ' .. fd .. ' ' .. digits(now_ms)) > 0 then
        local e = grant(cur, token, holder, metadata, ttl, fd, retention)
        emit('granted', now_ms, fd, holder, ttl)
        -- The next waiter is the head now: tell it when this grant ends,
        -- so that it takes over at once if the new holder never releases.
        local next = redis.call('LINDEX', KEYS[2], 0)
        if next then
          local nwid, nclient = string.match(next, '^([^\n]*)\n([^\n]*)\n')
          if nwid then
            announce(how, KEYS[1] .. ':w:' .. nclient, nwid .. ' h ' .. ttl)
          end
        end
        return {wid, client, token, fence, fd, e}
      end
    end
  end
  return nil, nil, true
end
