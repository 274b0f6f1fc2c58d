-- Settle one batch of a partition's stream entries in one atomic step, after apply.lua: write each
-- caller's reply, dead-letter what could not be applied, acknowledge every entry. Every key here
-- carries the partition's hash tag, so on a Redis Cluster they share one slot. See shared/worker.py.
--
-- ARGV[1], the batch as JSON; every key in it is an index into KEYS:
--   {"stream", "dead_letters", "group", "reply_ttl_s",
--    "replies": [{"reply_to", "status", "body"}, ...],
--    "ack": [entry ids],
--    "letters": [the number of ARGV values of each dead letter, in order]}
-- ARGV[2...]: the dead letters, binary-safe, field and value after field and value.
local batch = cjson.decode(ARGV[1])

for _, reply in ipairs(batch.replies) do
  local key = KEYS[reply.reply_to]
  redis.call('XADD', key, 'MAXLEN', '1', '*', 'status', reply.status, 'body', reply.body)
  redis.call('EXPIRE', key, batch.reply_ttl_s)
end
local first = 2
for _, count in ipairs(batch.letters) do
  redis.call('XADD', KEYS[batch.dead_letters], 'MAXLEN', '~', '10000', '*', unpack(ARGV, first, first + count - 1))
  first = first + count
end
if #batch.ack > 0 then
  redis.call('XACK', KEYS[batch.stream], batch.group, unpack(batch.ack))
end
return #batch.ack
