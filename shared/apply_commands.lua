-- Applies commands to their target keys (shared by apply.lua and settle.lua; see apply.lua).
local APPLIED, NOT_APPLIED, EXPIRED, SUPERSEDED = 1, 0, -1, -2

-- Whether stream id `a` ("ms-seq") is at or after stream id `b`.
local function at_or_after(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  a_ms, a_seq, b_ms, b_seq = tonumber(a_ms), tonumber(a_seq), tonumber(b_ms), tonumber(b_seq)
  return a_ms > b_ms or (a_ms == b_ms and a_seq >= b_seq)
end

-- Each command's outcome, or Redis's OOM error (nothing written yet) as the second value.
local function apply_commands(commands)
  local clock = redis.call('TIME')
  local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  local outcomes = {}
  for i, command in ipairs(commands) do
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
          return nil, result -- refused before anything was written: the worker answers the batch 503
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
end
