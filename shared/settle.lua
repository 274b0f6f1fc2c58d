-- Settle one batch of stream entries in one atomic step: apply each command, write each
-- caller's reply, dead-letter what could not be applied, acknowledge every entry.
-- Being one script, a command is never applied without its entry being acknowledged, nor
-- acknowledged without being applied; and a batch costs one round trip. See shared/worker.py.
--
-- KEYS: the stream, the dead-letter stream, one reply stream per reply (the commands' first,
--       then the reply-only ones), then each command's target key.
-- ARGV[1] group, ARGV[2] reply TTL, ARGV[3] the batch as JSON (one argument packs faster than
--       thousands): {"failed": [status, body], "commands": [[name, [args after the key],
--       status if true, body if true, status if false, body if false, TTL if true (0: none)], ...],
--       "replies": [[status, body], ...], "ids": [entry ids to acknowledge]};
--       then per dead letter, binary-safe: a count f and f values (field, value, ...).
-- Returns, per command: 1 (true: OK or a non-zero count), 0 (false: nil or zero), or the error;
-- or Redis's OOM error, the batch left untouched, when Redis refuses its first write for memory.
local group, ttl = ARGV[1], ARGV[2]
local batch = cjson.decode(ARGV[3])
local next_reply = 3
local next_target = 3 + #batch.commands + #batch.replies

local function reply(status, body)
  local key = KEYS[next_reply]
  next_reply = next_reply + 1
  redis.call('XADD', key, 'MAXLEN', '1', '*', 'status', status, 'body', body)
  redis.call('EXPIRE', key, ttl)
end

local outcomes = {}
for i, command in ipairs(batch.commands) do
  local key = KEYS[next_target]
  local result = redis.pcall(command[1], key, unpack(command[2]))
  next_target = next_target + 1
  if type(result) == 'table' and result.err then
    if string.sub(result.err, 1, 4) == 'OOM ' then
      -- Redis refuses only a script's first write for memory, so nothing is written yet: give the
      -- batch up, unacknowledged (its replies could not be written either). See Worker._refuse.
      return result
    end
    outcomes[i] = result.err
    reply(batch.failed[1], batch.failed[2])
  elseif result and result ~= 0 then
    if command[7] > 0 then
      redis.call('EXPIRE', key, command[7])
    end
    outcomes[i] = 1
    reply(command[3], command[4])
  else
    outcomes[i] = 0
    reply(command[5], command[6])
  end
end
for _, only in ipairs(batch.replies) do
  reply(only[1], only[2])
end
local a = 4
while a <= #ARGV do
  local count = tonumber(ARGV[a])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', '10000', '*', unpack(ARGV, a + 1, a + count))
  a = a + 1 + count
end
if #batch.ids > 0 then
  redis.call('XACK', KEYS[1], group, unpack(batch.ids))
end
return outcomes
