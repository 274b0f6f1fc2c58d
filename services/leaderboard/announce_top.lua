-- Announce a board's top when it changed (services/leaderboard/live.py; docs/protocol.md).
-- KEYS[1]: the board; KEYS[2]: its live stream, keys.live_top(board), in the board's slot.
-- ARGV[1]: how many entries make the top; ARGV[2]: how many entries the stream keeps.
-- Compares the top with the stream's last entry, and appends it only when it differs: any number
-- of workers may run this at once, or again, and listeners hear of each change once.
-- Returns 1 when it announced, 0 when the top was already the last one announced.
local top = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'REV', 'WITHSCORES')
local encoded = #top == 0 and '[]' or cjson.encode(top) -- cjson makes {} of an empty table
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
if last and last[2][2] == encoded then
  return 0
end
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], '*', 'top', encoded)
return 1
