-- fence: the fence of a new grant, shared by acquire.lua and release.lua
-- (package lua puts this file in front of each of them).
--
-- next_fence(counter, now_us) returns max(last fence + 1, Redis TIME in µs)
-- as a number and as exact digits, and stores it in the counter key. It
-- keeps increasing even after the counter is lost (FLUSHALL, restart without
-- persistence) as long as Redis's clock does not go back. One SET ... GET
-- stores the clock floor and reads the last fence; only when the counter is
-- ahead of the clock (a clock that went back, a Redlock raise) is it set
-- again, to last + 1. Numbers pass through string.format('%.0f') because
-- tostring() would print 1.7e+15 and lose digits.
local function next_fence(counter, now_us)
  local fence = now_us
  local digits = string.format('%.0f', fence)
  local last = redis.call('SET', counter, digits, 'GET')
  if last and tonumber(last) >= fence then
    fence = tonumber(last) + 1
    digits = string.format('%.0f', fence)
    redis.call('SET', counter, digits)
  end
  return fence, digits
end

