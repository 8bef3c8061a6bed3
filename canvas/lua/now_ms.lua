-- Prepended to the scripts that read the clock: `now`, Redis's time in ms.
local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)
