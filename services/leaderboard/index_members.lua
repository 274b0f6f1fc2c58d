-- Index one chunk of a board's members (services/leaderboard/handlers.py, index_members): each
-- member `{name}-{id}` becomes its player's entry in the member index; a player already indexed
-- under another member keeps one entry, under the indexed name, with the better score (keep_best).
-- KEYS: the board, its member index, its "indexed" flag. ARGV: the ZSCAN cursor, the chunk size.
-- Returns the next cursor; "done" when the flag says the board was indexed already, or there is no
-- board (its first score will index itself). The last chunk sets the flag.
-- (keep_best and owner_of, from shared/apply_commands.lua, come first.)
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[1]) == 0 then
  return 'done'
end
local scanned = redis.call('ZSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local found = scanned[2]
for i = 1, #found, 2 do
  local member, score = found[i], found[i + 1]
  local id = owner_of(member)
  if id then
    keep_best(KEYS[1], KEYS[2], id, member, score, false)
  end
end
if scanned[1] == '0' then
  redis.call('SET', KEYS[3], '1')
end
return scanned[1]
