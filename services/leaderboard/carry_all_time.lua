-- Carry one chunk of a board's scores from before seasons into its all-time board
-- (services/leaderboard/handlers.py, index_members): each player's entry there takes the better
-- score, under the name all-time already has for them, or this member's.
-- KEYS: the all-time board, its member index. ARGV: member, score, member, score, ...
for i = 1, #ARGV, 2 do
  local member, score = ARGV[i], ARGV[i + 1]
  local id = string.match(member, '^[^-]*%-(.+)$')
  if id then
    local indexed = redis.call('HGET', KEYS[2], id)
    if not indexed then
      redis.call('HSET', KEYS[2], id, member)
      indexed = member
    end
    redis.call('ZADD', KEYS[1], 'GT', score, indexed)
  end
end
return 1
