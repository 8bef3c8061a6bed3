-- KEYS: m. ARGV: epoch, bound. Drops the state if still in that epoch and dseq < bound.
local m = redis.call('HMGET', KEYS[1], 'epoch', 'dseq')
if m[1] ~= ARGV[1] or tonumber(m[2]) >= tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
return 1
