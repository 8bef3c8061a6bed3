-- KEYS: m. ARGV: node, epoch, seq.
-- The node lets the canvas go with every patch up to seq durable: the state is
-- exact again for the next node. seq -1: the node no longer knows where the canvas
-- stands, and the state goes (the next node sets it up from the database).
local m = redis.call('HMGET', KEYS[1], 'epoch', 'pnode')
if m[2] ~= ARGV[1] then return 0 end
if ARGV[3] == '-1' then return redis.call('DEL', KEYS[1]) end
if m[1] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[3], 'dseq', ARGV[3], 'pnode', '', 'pat', now)
return 1
