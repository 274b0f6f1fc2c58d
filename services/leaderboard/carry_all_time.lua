-- Carry one chunk of a board's scores from before seasons into its all-time board
-- (services/leaderboard/handlers.py, index_members): each player's entry there takes the better
-- score, under the name all-time already has for them, or this member's (keep_best).
-- KEYS: the all-time board, its member index. ARGV: member, score, member, score, ...
-- (keep_best and owner_of, from shared/apply_commands.lua, come first.)
for i = 1, #ARGV, 2 do
  local member, score = ARGV[i], ARGV[i + 1]
  local id = owner_of(member)
  if id then
    keep_best(KEYS[1], KEYS[2], id, member, score, false)
  end
end
return 1
