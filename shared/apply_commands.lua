-- Applies commands to their target keys (shared by apply.lua and settle.lua; see apply.lua).
-- The outcome codes (APPLIED, NOT_APPLIED, EXPIRED, SUPERSEDED, PRECONDITION_FAILED, OVER_LIMITS,
-- ELSEWHERE, ...) come first: shared/worker.py's Outcome, where each is defined and explained once.

-- Whether stream id `a` ("ms-seq") is at or after stream id `b`.
local function at_or_after(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  a_ms, a_seq, b_ms, b_seq = tonumber(a_ms), tonumber(a_seq), tonumber(b_ms), tonumber(b_seq)
  return a_ms > b_ms or (a_ms == b_ms and a_seq >= b_seq)
end

-- A version key holds its stream id as a JSON string, so a read takes a save and its version in one
-- JSON.MGET (services/gateway/store.py). One written as a plain string, before they were JSON, is
-- still read (the second value says so) and replaced by the next write.
local function version_of(key)
  local json = redis.pcall('JSON.GET', key)
  if type(json) == 'table' then -- the wrong type: a plain string
    return redis.call('GET', key), true
  end
  return json and string.sub(json, 2, -2), false
end

-- A version written (JSON.SET keeps a key's expiry, so it is set or removed each time).
local function set_version(key, seq, expire_s, plain)
  if plain then
    redis.call('DEL', key)
  end
  redis.call('JSON.SET', key, '$', '"' .. seq .. '"')
  if expire_s > 0 then
    redis.call('EXPIRE', key, expire_s)
  else
    redis.call('PERSIST', key)
  end
end

-- Whether a document meets a command's precondition: '*' it exists, '!' it does not, else it has one
-- of the versions listed (separated by spaces; '0-0' is a document written before versions).
local function meets(expect, key, version)
  local exists = redis.call('EXISTS', key) == 1
  if expect == '!' or not exists then
    return expect == '!' and not exists
  end
  if expect == '*' then
    return true
  end
  local current = version or '0-0'
  for wanted in string.gmatch(expect, '%S+') do
    if wanted == current then
      return true
    end
  end
  return false
end

-- Whether the JSON document at `key` keeps within `limits` ({max_bytes, max_values, max_depth}),
-- counting values as the gateway does (services/gateway/models.py count_values): each one, itself included.
local function within(key, limits)
  local json = redis.call('JSON.GET', key)
  if #json > limits.max_bytes then
    return false
  end
  local level, values = {cjson.decode(json)}, 1
  for _ = 1, limits.max_depth do
    local deeper = {}
    for _, node in ipairs(level) do
      if type(node) == 'table' then
        for _, child in pairs(node) do
          values = values + 1
          if type(child) == 'table' then
            deeper[#deeper + 1] = child
          end
        end
      end
    end
    if values > limits.max_values then
      return false
    end
    if #deeper == 0 then
      return true
    end
    level = deeper
  end
  return false
end

-- Named operations: what one Redis command can't do atomically. A command whose "command" is one
-- of these names runs it instead of a Redis command: `operation(key, extra, args)`, where `extra`
-- are the command's further keys (in `key`'s slot) and `args` its arguments. An operation returns
-- what a Redis command would (non-zero: applied), and must be idempotent: a redelivered command
-- runs it again. The worker's Action names them (shared/worker.py; services/leaderboard/handlers.py).
local OPERATIONS = {}

-- A member index's value for a player whose account was erased (account.board): no entry of theirs
-- is written on that board while it stands, so a score admitted before the erase and applied after it
-- leaves nothing. No member is named so: a name has no `!` (shared/protocol.py's owner_of).
local ERASED = '!'
-- A document version no command's stream id reaches (account.document): a save admitted before the
-- erase and applied after it is SUPERSEDED, and writes nothing.
local ERASED_VERSION = '99999999999999-0'

-- One entry per player, with its best score, written here only: `id`'s single entry on `board` gets
-- the better of its score and `score`. `members` (a hash, id to member) says which member is the
-- player's; a player it doesn't know yet is looked for under `member` itself, as a board from before
-- the index has it. With `rename` (a new score: post), the entry takes `member`'s name; without (the
-- start-up migrations, services/leaderboard/*.lua), it keeps the name `members` has, and `member`'s
-- entry, if any, merges into it. `reached` (ties.lua; none in the migrations) records when the entry
-- reached its score: `at_ms` for a better score, the kept time for an equal or lower one. Returns 1
-- when the board changed (a better score, or a new name), else 0.
local function keep_best(board, members, id, member, score, rename, reached, at_ms)
  local current = redis.call('HGET', members, id) or member
  if current == ERASED then
    return 0
  elseif current == member then
    redis.call('HSET', members, id, member)
    local changed = redis.call('ZADD', board, 'GT', 'CH', score, member)
    if changed == 1 and reached then
      redis.call('HSET', reached, member, at_ms)
    end
    return changed
  end
  local best, best_from = score, nil
  for _, entry in ipairs({ current, member }) do
    local found = redis.call('ZSCORE', board, entry)
    if found and tonumber(found) >= tonumber(best) then -- an equal score already held keeps its time
      best, best_from = found, entry
    end
  end
  local kept, gone = current, member
  if rename then
    kept, gone = member, current
  end
  local at = at_ms
  if reached and best_from then
    at = redis.call('HGET', reached, best_from)
  end
  redis.call('ZREM', board, gone)
  redis.call('ZADD', board, best, kept)
  redis.call('HSET', members, id, kept)
  if reached then
    redis.call('HDEL', reached, gone)
    if at then
      redis.call('HSET', reached, kept, at)
    else
      redis.call('HDEL', reached, kept)
    end
  end
  return 1
end

local function post(board, members, id, member, score, reached, at_ms)
  return keep_best(board, members, id, member, score, true, reached, at_ms)
end

-- The player whose entry a member `{name}-{id}` is: the rule of shared/protocol.py's owner_of
-- (tests/test_boards.py holds the two to it).
local function owner_of(member)
  return string.match(member, '^[^-]*%-(.+)$')
end

-- Whether an operator banned player `id` from the board whose aside hash (keys.board_aside) is `aside`.
local function banned(aside, id)
  return redis.call('HEXISTS', aside, id) == 1
end

-- A board's companions expire with it: `at` in epoch ms, or '0' for never.
local function expire_at(at, ...)
  if at ~= '0' then
    for _, key in ipairs({ ... }) do
      redis.call('PEXPIREAT', key, at)
    end
  end
end

-- extra: the board's member index, its reached times (ties.lua), its aside hash. args: id, member,
-- score, (0: never) when the board and its companions expire, in epoch ms (a season's archive: the
-- end of the last season it is kept for), and the score's time (ms). A banned player's score is
-- BANNED, nothing written.
OPERATIONS['board.post'] = function(board, extra, args)
  if banned(extra[3], args[1]) then
    return BANNED
  end
  local changed = post(board, extra[1], args[1], args[2], args[3], extra[2], args[5])
  expire_at(args[4], board, extra[1], extra[2])
  return changed
end

-- An operator's ban of a player from a board: its entry leaves the board, its member index and its
-- reached times, and is kept aside in the aside hash as `{score} {reached ms or -} {member}` ('' when
-- it had none), which also marks the player banned there. extra: the member index, the reached
-- times, the aside hash. args: id, and when the aside expires (as board.post's). Returns 1 when it
-- banned, 0 when the player was banned already (a redelivery changes nothing).
OPERATIONS['board.ban'] = function(board, extra, args)
  local members, reached, aside, id = extra[1], extra[2], extra[3], args[1]
  if banned(aside, id) then
    return 0
  end
  local member = redis.call('HGET', members, id)
  if member == ERASED then -- an erased account's tombstone stays
    member = false
  end
  local score = member and redis.call('ZSCORE', board, member)
  if score then
    local at = redis.call('HGET', reached, member) or '-'
    redis.call('HSET', aside, id, score .. ' ' .. at .. ' ' .. member)
  else
    redis.call('HSET', aside, id, '')
  end
  if member then
    redis.call('ZREM', board, member)
    redis.call('HDEL', members, id)
    redis.call('HDEL', reached, member)
  end
  expire_at(args[2], aside)
  return 1
end

-- An unban: the entry kept aside goes back on the board with the time it reached its score (keep_best:
-- a better score there wins). extra and args: as board.ban's. Returns 1 when it unbanned, 0 when the
-- player was not banned.
OPERATIONS['board.unban'] = function(board, extra, args)
  local members, reached, aside, id = extra[1], extra[2], extra[3], args[1]
  local kept = redis.call('HGET', aside, id)
  if not kept then
    return 0
  end
  redis.call('HDEL', aside, id)
  if kept ~= '' then
    local score, at, member = string.match(kept, '^(%S+) (%S+) (.+)$')
    if at == '-' then
      keep_best(board, members, id, member, score, false)
    else
      keep_best(board, members, id, member, score, false, reached, at)
    end
  end
  return 1
end

-- An operator's removal of one entry. extra: the member index, the reached times. args: the member,
-- the id of its player (owner_of). Returns 1 when it was on the board, else 0.
OPERATIONS['board.remove'] = function(board, extra, args)
  local removed = redis.call('ZREM', board, args[1])
  redis.call('HDEL', extra[2], args[1])
  if redis.call('HGET', extra[1], args[2]) == args[1] then
    redis.call('HDEL', extra[1], args[2])
  end
  return removed
end

-- The current season's board. extra: its member index, its season marker (the start of the season
-- it holds), its list of seasons, its reached times, its aside hash. args: id, member, score, the
-- score's season's label and start (ms), the start of the oldest season still kept, and the score's
-- time (ms). A score of a newer season than the marker's first clears the board (every score on it
-- is already in its season's archive; the entries kept aside are in their archive's aside, and the
-- bans stay) and moves the marker: atomic, and idempotent, so of two workers racing only one clears.
-- A score of an older season leaves the board alone (it lands in its archive only) and returns 1. A
-- banned player's score is BANNED.
OPERATIONS['season.post'] = function(board, extra, args)
  local members, marker, seasons, reached, aside = extra[1], extra[2], extra[3], extra[4], extra[5]
  local start = tonumber(args[5])
  redis.call('ZADD', seasons, 'NX', args[5], args[4])
  redis.call('ZREMRANGEBYSCORE', seasons, '-inf', '(' .. args[6])
  local held = tonumber(redis.call('GET', marker) or args[5])
  if held > start then
    return 1
  elseif held < start then
    redis.call('DEL', board, members, reached)
    for _, id in ipairs(redis.call('HKEYS', aside)) do
      redis.call('HSET', aside, id, '')
    end
  end
  redis.call('SET', marker, args[5])
  if banned(aside, args[1]) then
    return BANNED
  end
  return post(board, members, args[1], args[2], args[3], reached, args[7])
end

-- A board's top on its live stream, when it changed (docs/protocol.md, "Live tops"): every score's
-- follow-up, once a batch per board, and each board's at every leaderboard worker's sweep. extra:
-- the live stream, keys.live_top(board), and the board's reached times (its top is in tie order,
-- ties.lua). args: how many entries make the top, how many entries the
-- stream keeps. The top is compared with the stream's last entry and appended only when it differs:
-- any number of workers may run this at once, or again, and listeners hear of each change once.
-- Returns 1 when it announced, 0 when the top was already the last one announced.
OPERATIONS['top.announce'] = function(board, extra, args)
  local top = tied_range(board, extra[2], 0, tonumber(args[1]) - 1)
  local encoded = #top == 0 and '[]' or cjson.encode(top) -- cjson makes {} of an empty table
  local last = redis.call('XREVRANGE', extra[1], '+', '-', 'COUNT', 1)[1]
  if last and last[2][2] == encoded then
    return 0
  end
  redis.call('XADD', extra[1], 'MAXLEN', args[2], '*', 'top', encoded)
  return 1
end

-- Erasing an account (DELETE /api/account; services/leaderboard/handlers.py): every operation here is
-- idempotent, and leaves a tombstone for `args`' last value ms, past every command admitted before
-- the erase, so none of them brings anything back.
--
-- A player's entry on `board` removed with its reached time (extra[2]), its member index (extra[1])
-- left with ERASED for the player. An entry a ban keeps aside (extra[3], keys.board_aside) goes too;
-- the ban stays. args: the player, the tombstone's ms.
OPERATIONS['account.board'] = function(board, extra, args)
  local member = redis.call('HGET', extra[1], args[1])
  if member and member ~= ERASED then
    redis.call('ZREM', board, member)
    redis.call('HDEL', extra[2], member)
  end
  if redis.call('HEXISTS', extra[3], args[1]) == 1 then
    redis.call('HSET', extra[3], args[1], '')
  end
  redis.call('HSET', extra[1], args[1], ERASED)
  redis.call('HPEXPIRE', extra[1], args[2], 'FIELDS', 1, args[1])
  return 1
end

-- A save removed, its version key (extra[1]) left at ERASED_VERSION. args: the tombstone's ms.
OPERATIONS['account.document'] = function(document, extra, args)
  redis.call('DEL', document, extra[1])
  redis.call('JSON.SET', extra[1], '$', '"' .. ERASED_VERSION .. '"')
  redis.call('PEXPIRE', extra[1], args[1])
  return 1
end

-- A recovery code's entry removed, only if it leads to the player (args[1]): the code's hash came
-- in the command's payload, which is no more trustworthy than whoever could write the stream.
OPERATIONS['account.code'] = function(code, extra, args)
  if redis.call('GET', code) == args[1] then
    redis.call('DEL', code)
  end
  return 1
end

-- A verified run starts (POST /api/leaderboard/{key}/runs): `run` is keys.run, in its board's slot.
-- args: the player, the start (its command's stream entry time, ms), when it expires (epoch ms).
-- Only once: a redelivered start leaves the run as it is, used or not.
OPERATIONS['run.start'] = function(run, extra, args)
  if redis.call('EXISTS', run) == 0 then
    redis.call('HSET', run, 'player', args[1], 'started', args[2])
    redis.call('PEXPIREAT', run, args[3])
  end
  return 1
end

-- Whether a verified score's run lets it be written (the command's "run": {"key", "player", "at_ms"
-- (the score's stream entry time, on the clock its run's start was taken on), "min_ms", "max_ms",
-- "per_s", "base", "score"}): nil, and the run is marked used by this command, in the same atomic
-- step as the write; else the outcome that refuses it, nothing written. A redelivered command finds
-- the run used by itself: SUPERSEDED, answered as applied.
local function run_refusal(run, key, seq)
  local found = redis.call('HMGET', key, 'player', 'started', 'used')
  local elapsed_ms = found[2] and run.at_ms - tonumber(found[2])
  if not found[1] or elapsed_ms > run.max_ms then
    return RUN_UNKNOWN
  elseif found[1] ~= run.player then
    return RUN_FOREIGN
  elseif found[3] == seq then
    return SUPERSEDED
  elseif found[3] then
    return RUN_USED
  elseif elapsed_ms < run.min_ms then
    return RUN_TOO_SHORT
  elseif run.score > run.per_s * elapsed_ms / 1000 + run.base then
    return RUN_TOO_HIGH
  end
  redis.call('HSET', key, 'used', seq)
  return nil
end

-- A command's arguments: `args` is {first, count}, where they are in ARGV (not in the JSON: Redis's
-- cjson decoding a document escaped inside it cost more than the write).
local function args_of(command)
  local first = command.args[1]
  return { unpack(ARGV, first, first + command.args[2] - 1) }
end

-- The keys a call's commands name by index: KEYS; or, in a node-wide call on a Redis Cluster (one
-- call for every slot a master serves, the script flagged allow-cross-slot-keys), the names in the
-- batch's "keys", each checked to be served here before anything is written: nil if one is not (the
-- slot moved, or is moving, and the worker's map is behind).
local function targets_of(batch)
  if not batch.keys then
    return KEYS
  end
  for _, key in ipairs(batch.keys) do
    if type(redis.pcall('EXISTS', key)) == 'table' then
      return nil
    end
  end
  return batch.keys
end

-- One command's outcome; or nil and Redis's OOM error, when Redis refused its write for want of
-- memory (as a script's first write only, nothing is written yet). Its keys are indexes into
-- `targets` (targets_of).
local function apply_one(command, targets, now_ms)
  local key = targets[command.key]
  local version, plain = false, false
  if command.version > 0 then
    version, plain = version_of(targets[command.version])
  end
  if command.deadline_ms > 0 and now_ms > command.deadline_ms then
    return EXPIRED
  end
  local refusal = command.run and run_refusal(command.run, targets[command.run.key], command.seq)
  if refusal then
    return refusal
  elseif version and at_or_after(version, command.seq) then
    return SUPERSEDED
  elseif command.expect and not meets(command.expect, key, version) then
    return PRECONDITION_FAILED
  end
  local before = command.limits and redis.call('JSON.GET', key)
  local result
  local operation = OPERATIONS[command.command]
  if operation then
    local extra = {}
    for j, index in ipairs(command.extra_keys or {}) do
      extra[j] = targets[index]
    end
    local ok, answer = pcall(operation, key, extra, args_of(command))
    result = ok and answer or { err = type(answer) == 'table' and answer.err or tostring(answer) }
  else
    result = redis.pcall(command.command, key, unpack(args_of(command)))
  end
  if type(result) == 'table' and result.err then
    if string.sub(result.err, 1, 4) == 'OOM ' then
      return nil, result
    end
    return result.err
  elseif operation and type(result) == 'number' and result < 0 then -- an operation's own outcome: BANNED
    return result
  elseif result and result ~= 0 and command.limits and not within(key, command.limits) then
    redis.call('JSON.SET', key, '$', before) -- within this script nobody saw the document over them
    return OVER_LIMITS
  elseif result and result ~= 0 then
    if command.expire_s > 0 then
      redis.call('EXPIRE', key, command.expire_s)
    end
    if command.version > 0 then
      set_version(targets[command.version], command.seq, command.expire_s, plain)
    end
    return APPLIED
  end
  return NOT_APPLIED
end

-- Each command's outcome, or nil and Redis's OOM error (nothing written: the worker answers the batch
-- 503). A command that brings its "outcome" was applied before, by apply.lua on its own master:
-- settle.lua only answers it.
local function apply_commands(commands, targets)
  local clock = redis.call('TIME')
  local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  local outcomes = {}
  for i, command in ipairs(commands) do
    if command.outcome ~= nil then
      outcomes[i] = command.outcome
    else
      local outcome, refused = apply_one(command, targets, now_ms)
      if refused then
        return nil, refused
      end
      outcomes[i] = outcome
    end
  end
  return outcomes
end

-- A batch's commands applied (apply.lua, settle.lua): their outcomes; or nil and what the call answers
-- at once, nothing written: ELSEWHERE (targets_of), or Redis's OOM error. A "mark" (DURABILITY=
-- replicated) is written last, so the WAIT after the call covers every earlier write on its master.
local function apply_batch(batch)
  local targets = targets_of(batch)
  if not targets then
    return nil, ELSEWHERE
  end
  local outcomes, refused = apply_commands(batch.commands, targets)
  if refused then
    return nil, refused
  end
  if batch.mark then
    redis.call('SET', targets[batch.mark], '1', 'PX', 60000)
  end
  return outcomes
end
