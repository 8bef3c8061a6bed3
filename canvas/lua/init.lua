-- KEYS: m. ARGV: seq, epoch. Set-if-absent: a racing hub's state wins.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'dseq', ARGV[1], 'epoch', ARGV[2], 'pnode', '',
  'pat', now)
return 1
