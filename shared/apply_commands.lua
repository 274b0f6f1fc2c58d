-- Applies commands to their target keys (shared by apply.lua and settle.lua; see apply.lua).
local APPLIED, NOT_APPLIED, EXPIRED, SUPERSEDED = 1, 0, -1, -2
-- Refused, nothing written: the caller's precondition does not hold; the written document broke its limits.
local PRECONDITION_FAILED, OVER_LIMITS = -4, -5

-- Whether stream id `a` ("ms-seq") is at or after stream id `b`.
local function at_or_after(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  a_ms, a_seq, b_ms, b_seq = tonumber(a_ms), tonumber(a_seq), tonumber(b_ms), tonumber(b_seq)
  return a_ms > b_ms or (a_ms == b_ms and a_seq >= b_seq)
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
    elseif command.expect and not meets(command.expect, key, version) then
      outcomes[i] = PRECONDITION_FAILED
    else
      local before = command.limits and redis.call('JSON.GET', key)
      local result = redis.pcall(command.command, key, unpack(command.args))
      if type(result) == 'table' and result.err then
        if string.sub(result.err, 1, 4) == 'OOM ' then
          return nil, result -- refused before anything was written: the worker answers the batch 503
        end
        outcomes[i] = result.err
      elseif result and result ~= 0 and command.limits and not within(key, command.limits) then
        redis.call('JSON.SET', key, '$', before) -- within this script nobody saw the document over them
        outcomes[i] = OVER_LIMITS
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
