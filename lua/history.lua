-- history: read a name's last grants, newest first: the current one (live,
-- or expired but not yet recorded), then the ended ones that the writing
-- scripts recorded (see common.lua). Never a token.
--
-- KEYS[1]  the name's hash, PREFIX{NAME} (see common.lua)
-- KEYS[2]  the name's history, PREFIX{NAME}:h
-- ARGV[1]  how many entries to answer at most (> 0)
--
-- Reply
--   {now_ms, current, entry, entry, ...}
-- where current is "" when no grant is current, else an entry as common.lua
-- gives it, of the kind "held" (ended_ms then is its expiry) or "expired";
-- and the entries are the recorded ones, at most ARGV[1] in all.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local cur = redis.call('HMGET', KEYS[1], 't', 'e', 'f', 'h', 'g', 'x', 'd')
local max = tonumber(ARGV[1])
local current = ''
if cur[1] then
  local kind = 'held'
  if (tonumber(cur[2]) or 0) <= now_ms then
    kind = 'expired'
  end
  local granted = cur[5] or string.format('%.0f', math.floor((tonumber(cur[3]) or 0) / 1000))
  current = table.concat({kind, cur[3] or '', granted, cur[2] or '', cur[6] or '', cur[7] or '', '', cur[4] or '', ''}, '\n')
  max = max - 1
end
local reply = {now_ms, current}
if max > 0 then
  for _, entry in ipairs(redis.call('LRANGE', KEYS[2], 0, max - 1)) do
    reply[#reply + 1] = entry
  end
end
return reply
