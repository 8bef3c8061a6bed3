-- KEYS: m, log. ARGV: epoch, channel, frame head, frame tail, last seq.
-- Moves dseq to the last seq and publishes, in the same script (so in dseq order), the
-- patches it passes, read from the stream: a hub sends each patch to Redis once.
-- Answers {patches published, bytes published}, or {-1, 0} (OTHER_EPOCH) when Redis's
-- state is in another epoch, or {-2, 0} (GAP) when the stream no longer holds every
-- patch it would pass.
local m = redis.call('HMGET', KEYS[1], 'epoch', 'dseq')
if m[1] ~= ARGV[1] then return {-1, 0} end
local dseq, last = tonumber(m[2]), tonumber(ARGV[5])
if last <= dseq then return {0, 0} end
local entries = redis.call('XRANGE', KEYS[2], '0-' .. (dseq + 1), '0-' .. last)
if #entries ~= last - dseq then return {-2, 0} end
local parts = {}
for i, entry in ipairs(entries) do parts[i] = entry[2][2] end
local message = ARGV[3] .. table.concat(parts, ',') .. ARGV[4]
redis.call('HSET', KEYS[1], 'dseq', last, 'pat', now)
redis.call('PUBLISH', ARGV[2], message)
return {#parts, #message}
