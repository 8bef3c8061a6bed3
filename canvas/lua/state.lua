-- KEYS: m. {seq, dseq, epoch, pnode, ms since pat} or nil.
local m = redis.call('HMGET', KEYS[1], 'seq', 'dseq', 'epoch', 'pnode', 'pat')
if not m[1] then return false end
return {m[1], m[2], m[3], m[4], now - tonumber(m[5])}
