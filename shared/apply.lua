-- Apply a batch's commands to their target keys. Each is checked first, atomically with its write:
--   * its deadline, on Redis's clock: past it, its caller has had a 504, so it is not applied;
--   * for a versioned key (a document), the version: the stream id of the last command that wrote
--     it. A command no newer than that was applied already (a redelivery) or was overtaken by a
--     newer one of the same player, and is not applied again. See shared/worker.py.
-- On a Redis Cluster every key of one call shares a hash slot (a version key is tagged with its
-- document's key), and the replies and acknowledgements come after, from settle.lua.
--
-- ARGV[1], JSON: {"commands": [{"command", "key", "version" (0: none), "args" (after the key),
--                 "expire_s" (0: none), "deadline_ms" (0: none), "seq" (its stream entry id),
--                 "extra_keys" (optional: an operation's further keys)}, ...]},
--                 each key an index into KEYS. "command" is a Redis command or the name of one of
--                 apply_commands.lua's OPERATIONS.
-- Returns, per command: 1 (applied: OK or a non-zero count), 0 (not: nil or zero), -1 (past its
-- deadline), -2 (this or a newer command was applied already), or Redis's error text; or Redis's
-- OOM error, nothing written, when Redis refuses its first write for memory.
-- (apply_commands, from shared/apply_commands.lua, comes first.)
local outcomes, refused = apply_commands(cjson.decode(ARGV[1]).commands)
return refused or outcomes
