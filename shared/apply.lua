-- Apply a batch's commands to their target keys. Each is checked first, atomically with its write:
--   * its deadline, on Redis's clock: past it, its caller has had a 504, so it is not applied;
--   * for a versioned key (a document), the version: the stream id of the last command that wrote
--     it. A command no newer than that was applied already (a redelivery) or was overtaken by a
--     newer one of the same player, and is not applied again. See shared/worker.py.
-- On a Redis Cluster every key of one call shares a hash slot (a version key is tagged with its
-- document's key), and the replies and acknowledgements come after, from settle.lua.
--
-- ARGV[1], JSON: {"commands": [{"command", "key", "version" (0: none), "args" (after the key),
--                 "expire_s" (0: none), "deadline_ms", "seq" (its stream entry id)}, ...]},
--                 each key an index into KEYS.
-- Returns, per command: 1 (applied: OK or a non-zero count), 0 (not: nil or zero), -1 (past its
-- deadline), -2 (this or a newer command was applied already), or Redis's error text; or Redis's
-- OOM error, nothing written, when Redis refuses its first write for memory.
local APPLIED, NOT_APPLIED, EXPIRED, SUPERSEDED = 1, 0, -1, -2
local batch = cjson.decode(ARGV[1])
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- Whether stream id `a` ("ms-seq") is at or after stream id `b`.
local function at_or_after(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  a_ms, a_seq, b_ms, b_seq = tonumber(a_ms), tonumber(a_seq), tonumber(b_ms), tonumber(b_seq)
  return a_ms > b_ms or (a_ms == b_ms and a_seq >= b_seq)
end

local outcomes = {}
for i, command in ipairs(batch.commands) do
  local key = KEYS[command.key]
  local version = command.version > 0 and redis.call('GET', KEYS[command.version])
  if now_ms > command.deadline_ms then
    outcomes[i] = EXPIRED
  elseif version and at_or_after(version, command.seq) then
    outcomes[i] = SUPERSEDED
  else
    local result = redis.pcall(command.command, key, unpack(command.args))
    if type(result) == 'table' and result.err then
      if string.sub(result.err, 1, 4) == 'OOM ' then
        return result -- refused before anything was written: the worker answers the batch 503
      end
      outcomes[i] = result.err
    elseif result and result ~= 0 then
      if command.expire_s > 0 then
        redis.call('EXPIRE', key, command.expire_s)
      end
      if command.version > 0 then
        if command.expire_s > 0 then
          redis.call('SET', KEYS[command.version], command.seq, 'EX', command.expire_s)
        else
          redis.call('SET', KEYS[command.version], command.seq)
        end
      end
      outcomes[i] = APPLIED
    else
      outcomes[i] = NOT_APPLIED
    end
  end
end
return outcomes
