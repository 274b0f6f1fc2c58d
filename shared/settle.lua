-- Settle one batch of a partition's stream entries in one atomic step: apply the commands whose
-- targets the partition's master serves (on a single Redis, all of them: one script per batch), write
-- each caller's reply, dead-letter what could not be applied, acknowledge every entry. KEYS are in
-- the partition's slot; on a Redis Cluster the commands' targets come by name, in other slots of the
-- same master, as in apply.lua, and a target not served here makes the whole call write nothing and
-- return ELSEWHERE. Commands on other masters were applied before, by apply.lua, and arrive with
-- their outcome: each command's reply is chosen here, by one rule, wherever it was applied.
-- See shared/worker.py.
--
-- ARGV[1], the batch as JSON; every key in it is an index into KEYS, every answer the index in ARGV
-- of a reply's status, its body the next (ARGV[2...] hold the commands' arguments, the answers and
-- the dead letters, binary-safe):
--   {"stream", "dead_letters", "group", "reply_ttl_s",
--    optional "keys" (the commands' targets by name, as apply.lua's),
--    "commands": [as apply.lua's, plus "reply_to", and the answers "if_true", "if_false",
--                 optional "refusals": {outcome as text: answer} for the other outcomes;
--                 a command with an "outcome" was applied before and brings only that and its answers;
--                 a command without "reply_to" is another's follow-up, and its outcome answers no one],
--    "failed": the answer to a command Redis refused,
--    "replies": [{"reply_to", "answer"}, ...],
--    "ack": [entry ids],
--    "letters": [{first, count} of each dead letter's fields and values in ARGV, in order]}
-- Returns the outcomes of its commands, as apply.lua does; or Redis's OOM error, nothing written,
-- when Redis refuses its first write for memory; or ELSEWHERE, alone.
-- (apply_batch, from shared/apply_commands.lua, comes first.)
local batch = cjson.decode(ARGV[1])

local function reply(key_index, answer)
  local key = KEYS[key_index]
  redis.call('XADD', key, 'MAXLEN', '1', '*', 'status', ARGV[answer], 'body', ARGV[answer + 1])
  redis.call('EXPIRE', key, batch.reply_ttl_s)
end

local outcomes, answer = apply_batch(batch)
if answer then
  return answer
end
for i, command in ipairs(batch.commands) do
  local outcome = outcomes[i]
  if command.reply_to == nil then -- a follow-up: the worker reads its outcome
  elseif outcome == APPLIED or outcome == SUPERSEDED then
    reply(command.reply_to, command.if_true)
  elseif outcome == NOT_APPLIED then
    reply(command.reply_to, command.if_false)
  elseif command.refusals and command.refusals[tostring(outcome)] then
    reply(command.reply_to, command.refusals[tostring(outcome)])
  elseif outcome ~= EXPIRED then
    reply(command.reply_to, batch.failed)
  end
end
for _, only in ipairs(batch.replies) do
  reply(only.reply_to, only.answer)
end
for _, letter in ipairs(batch.letters) do
  local first = letter[1]
  redis.call('XADD', KEYS[batch.dead_letters], 'MAXLEN', '~', '10000', '*', unpack(ARGV, first, first + letter[2] - 1))
end
if #batch.ack > 0 then
  redis.call('XACK', KEYS[batch.stream], batch.group, unpack(batch.ack))
end
return outcomes
