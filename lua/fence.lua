-- fence: the fence of a new grant, shared by acquire.lua and release.lua
-- (package lua puts this file in front of each of them).
--
-- next_fence(counter, now_us) returns max(last fence + 1, Redis TIME in µs)
-- as a number and as exact digits, and stores it in the counter key; or nil
-- and a message, changing nothing, when the counter holds anything but a
-- fence below 2^53 - 1 (the largest integer JSON and JavaScript keep exact). It
-- keeps increasing even after the counter is lost (FLUSHALL, restart without
-- persistence) as long as Redis's clock does not go back. One SET ... GET
-- stores the clock floor and reads the last fence; only when the counter is
-- ahead of the clock (a clock that went back, a Redlock raise) is it set
-- again, to last + 1. Numbers pass through string.format('%.0f') because
-- tostring() would print 1.7e+15 and lose digits.
local MAX_FENCE = 9007199254740991 -- 2^53 - 1: exact in JSON and JavaScript

local function next_fence(counter, now_us)
  local fence = now_us
  local digits = string.format('%.0f', fence)
  local last = redis.call('SET', counter, digits, 'GET')
  if last then
    -- Only this file writes the counter, always as at most 16 digits; any
    -- other value is put back as it was and refused, so nothing changes.
    local n = string.match(last, '^%d+$') and #last <= 16 and tonumber(last)
    if not n or n >= MAX_FENCE then
      redis.call('SET', counter, last)
      return nil, 'the fence counter ' .. counter .. ' holds ' .. string.format('%q', string.sub(last, 1, 40)) ..
        ', not a fence below 2^53-1: no grant can get a higher fence; nothing was changed'
    end
    if n >= fence then
      fence = n + 1
      digits = string.format('%.0f', fence)
      redis.call('SET', counter, digits)
    end
  end
  return fence, digits
end
