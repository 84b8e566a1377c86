-- census: count the live grants and the queued waiters among some keys, for
-- Client.Census (one call per SCAN answer, on a Redis that is not a
-- Cluster: a Cluster's keys of many slots cannot share a script). It
-- changes nothing.
--
-- KEYS     lease hashes PREFIX{NAME} first, then queues PREFIX{NAME}:q
--          (see common.lua), each key once
-- ARGV[1]  how many of KEYS, from the first, are hashes
--
-- Reply {held, waiters}: held counts the hashes with a live grant (t set, e
--   after now), waiters the entries of the queues. A key of another type
--   counts nothing.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local hashes = tonumber(ARGV[1])
local held, waiters = 0, 0
for i = 1, #KEYS do
  if i <= hashes then
    local cur = redis.pcall('HMGET', KEYS[i], 't', 'e')
    if type(cur) == 'table' and not cur.err and cur[1] and (tonumber(cur[2]) or 0) > now_ms then
      held = held + 1
    end
  else
    local n = redis.pcall('LLEN', KEYS[i])
    if type(n) == 'number' then
      waiters = waiters + n
    end
  end
end
return {held, waiters}
