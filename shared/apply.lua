-- Apply a batch's commands to their target keys. Each is checked first, atomically with its write:
--   * its deadline, on Redis's clock: past it, its caller has had a 504, so it is not applied;
--   * for a versioned key (a document), the version: the stream id of the last command that wrote
--     it. A command no newer than that was applied already (a redelivery) or was overtaken by a
--     newer one of the same player, and is not applied again. See shared/worker.py.
-- The replies and acknowledgements come after, from settle.lua.
--
-- Two ways to name the keys. On a single Redis, or for one hash slot, they are KEYS. On a Redis
-- Cluster one call applies every command whose keys one master serves, whatever their slots: the
-- worker sends the names in ARGV[1]'s "keys" and declares only the first (so the call reaches that
-- master), and the script runs with allow-cross-slot-keys (the worker prepends the flag). If the
-- slot map moved under the worker, a key is not served here: then nothing is written and the call
-- returns ELSEWHERE (targets_of, in apply_commands.lua), and the worker applies those commands one
-- slot at a time (KEYS, which the client routes, following MOVED).
--
-- ARGV[1], JSON: {"commands": [{"command", "key", "version" (0: none), "args" (after the key: their
--                 first index in ARGV and their count, {first, count}; they follow ARGV[1]),
--                 "expire_s" (0: none), "deadline_ms" (0: none), "seq" (its stream entry id),
--                 optional "expect" (a precondition: '*', '!' or versions, see apply_commands.lua),
--                 optional "limits" ({"max_bytes", "max_values", "max_depth"}: what the written JSON
--                 document must keep within, else it is restored),
--                 optional "extra_keys" (an operation's further keys)}, ...],
--                 optional "keys": [key names],
--                 optional "mark": a key, keys.replication_mark, written last (DURABILITY=replicated)},
--                 each key an index into KEYS, or into "keys" when it is there. "command" is a Redis
--                 command or the name of one of apply_commands.lua's OPERATIONS.
-- Returns, per command: 1 (applied: OK or a non-zero count), 0 (not: nil or zero), -1 (past its
-- deadline), -2 (this or a newer command was applied already), -4 (its precondition does not hold),
-- -5 (the written document broke its limits; restored), or Redis's error text; or Redis's
-- OOM error, nothing written, when Redis refuses its first write for memory; or ELSEWHERE, alone.
-- (apply_commands, from shared/apply_commands.lua, comes first.)
local batch = cjson.decode(ARGV[1])
local targets = targets_of(batch)
if not targets then
  return ELSEWHERE
end
local outcomes, refused = apply_commands(batch.commands, targets)
if refused then
  return refused
end
if batch.mark then -- DURABILITY=replicated: a write of this call's own, so its WAIT covers every earlier one
  redis.call('SET', targets[batch.mark], '1', 'PX', 60000)
end
return outcomes
