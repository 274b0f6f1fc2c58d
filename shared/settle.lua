-- Settle one batch of stream entries in one atomic step: apply each command, write each
-- caller's reply, dead-letter what could not be applied, acknowledge every entry.
-- Being one script, a command is never applied without its entry being acknowledged, nor
-- acknowledged without being applied; and a batch costs one round trip. See shared/worker.py.
--
-- ARGV[1], the batch as JSON; every key in it is an index into KEYS:
--   {"stream", "dead_letters", "group", "reply_ttl_s",
--    "failed": {"status", "body"}  (the reply to a command Redis refused),
--    "commands": [{"command", "key", "args" (after the key), "expire_s" (0: none), "reply_to",
--                  "if_true": {"status", "body"}, "if_false": {"status", "body"}}, ...],
--    "replies": [{"reply_to", "status", "body"}, ...]  (answers without a command),
--    "ack": [entry ids],
--    "letters": [the number of ARGV values of each dead letter, in order]}
-- ARGV[2...]: the dead letters, binary-safe, field and value after field and value.
-- Returns, per command: 1 (true: OK or a non-zero count), 0 (false: nil or zero), or the error;
-- or Redis's OOM error, the batch left untouched, when Redis refuses its first write for memory.
local batch = cjson.decode(ARGV[1])

local function reply(key_index, answer)
  local key = KEYS[key_index]
  redis.call('XADD', key, 'MAXLEN', '1', '*', 'status', answer.status, 'body', answer.body)
  redis.call('EXPIRE', key, batch.reply_ttl_s)
end

local outcomes = {}
for i, command in ipairs(batch.commands) do
  local key = KEYS[command.key]
  local result = redis.pcall(command.command, key, unpack(command.args))
  if type(result) == 'table' and result.err then
    if string.sub(result.err, 1, 4) == 'OOM ' then
      -- Redis refuses only a script's first write for memory, so nothing is written yet: give the
      -- batch up, unacknowledged (its replies could not be written either). See Worker._refuse.
      return result
    end
    outcomes[i] = result.err
    reply(command.reply_to, batch.failed)
  elseif result and result ~= 0 then
    if command.expire_s > 0 then
      redis.call('EXPIRE', key, command.expire_s)
    end
    outcomes[i] = 1
    reply(command.reply_to, command.if_true)
  else
    outcomes[i] = 0
    reply(command.reply_to, command.if_false)
  end
end
for _, only in ipairs(batch.replies) do
  reply(only.reply_to, only)
end
local first = 2
for _, count in ipairs(batch.letters) do
  redis.call('XADD', KEYS[batch.dead_letters], 'MAXLEN', '~', '10000', '*', unpack(ARGV, first, first + count - 1))
  first = first + count
end
if #batch.ack > 0 then
  redis.call('XACK', KEYS[batch.stream], batch.group, unpack(batch.ack))
end
return outcomes
