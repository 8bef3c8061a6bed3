-- KEYS: m. ARGV: expected seq, epoch, node.
-- The node takes the canvas (see canvas.sequencer_leased) with the patch it appends
-- as seq + 1, if no other node holds it, the state is at the expected seq and in this
-- epoch. Answers {'OK', seq, dseq}, {'BUSY', seq, holder}, {'BEHIND', seq},
-- {'EPOCH'} or {'NOSTATE'}.
local m = redis.call('HMGET', KEYS[1], 'seq', 'dseq', 'epoch', 'pnode')
if not m[1] then return {'NOSTATE'} end
if m[3] ~= ARGV[2] then return {'EPOCH'} end
if m[4] ~= '' and m[4] ~= ARGV[3] then return {'BUSY', m[1], m[4]} end
if tonumber(m[1]) ~= tonumber(ARGV[1]) then return {'BEHIND', m[1]} end
local seq = tonumber(m[1]) + 1
redis.call('HSET', KEYS[1], 'seq', seq, 'pnode', ARGV[3], 'pat', now)
return {'OK', seq, m[2]}
