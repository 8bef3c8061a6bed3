-- KEYS: m, log. ARGV: expected seq, epoch, node, patch JSON, maxlen.
-- Appends the patch as seq + 1 if the caller holds the expected seq in this epoch.
local m = redis.call('HMGET', KEYS[1], 'seq', 'dseq', 'epoch', 'pnode', 'pat')
if not m[1] then return {'NOSTATE'} end
if m[3] ~= ARGV[2] then return {'EPOCH'} end
local seq, dseq = tonumber(m[1]), tonumber(m[2])
if dseq < seq and m[4] ~= ARGV[3] then return {'BUSY', seq, now - tonumber(m[5])} end
if seq ~= tonumber(ARGV[1]) then return {'BEHIND', seq} end
seq = seq + 1
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '0-' .. seq, 'p', ARGV[4], 'n', ARGV[3])
if dseq == seq - 1 then
  redis.call('HSET', KEYS[1], 'seq', seq, 'pnode', ARGV[3], 'pat', now)
else
  redis.call('HSET', KEYS[1], 'seq', seq)
end
return {'OK', seq}
