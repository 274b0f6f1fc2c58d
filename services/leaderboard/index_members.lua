-- Index one chunk of a board's members (services/leaderboard/handlers.py, index_members): each
-- member `{name}-{id}` becomes its player's entry in the member index; a player already indexed
-- under another member keeps one entry, under the indexed name, with the better score.
-- KEYS: the board, its member index, its "indexed" flag. ARGV: the ZSCAN cursor, the chunk size.
-- Returns the next cursor; "done" when the flag says the board was indexed already, or there is no
-- board (its first score will index itself). The last chunk sets the flag.
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[1]) == 0 then
  return 'done'
end
local scanned = redis.call('ZSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local found = scanned[2]
for i = 1, #found, 2 do
  local member, score = found[i], found[i + 1]
  local id = string.match(member, '^[^-]*%-(.+)$')
  if id then
    local indexed = redis.call('HGET', KEYS[2], id)
    if not indexed then
      redis.call('HSET', KEYS[2], id, member)
    elseif indexed ~= member then
      local kept = redis.call('ZSCORE', KEYS[1], indexed)
      redis.call('ZREM', KEYS[1], member)
      if not kept or tonumber(score) > tonumber(kept) then
        redis.call('ZADD', KEYS[1], score, indexed)
      end
    end
  end
end
if scanned[1] == '0' then
  redis.call('SET', KEYS[3], '1')
end
return scanned[1]
