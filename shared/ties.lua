-- Ties (API.md, v3): of two entries with one score, the one that reached it first ranks higher. The
-- board's sorted set keeps the real scores; beside it, in its slot, its `reached` hash
-- (keys.board_reached) holds when each member reached its score (the stream entry time of the score
-- that set it: apply_commands.lua's keep_best). An entry without one (a bare ZADD) ranks after the
-- timed entries of its score, in Redis's own order (member, descending) among themselves.
--
-- Read by every ranked read (services/gateway/store.py's scripts) and by the live top
-- (apply_commands.lua's top.announce): one rule, here. Redis's order is the answer wherever a
-- page's scores are not shared beyond their own row, which a window of one more row each side
-- tells; only a score held by several entries costs its whole group, read and sorted.

local HMGET_CHUNK = 1000 -- arguments of one HMGET: unpack() has a limit

-- The members holding `score` on `board` in rank order, and the 0-based rank of the first.
local function tie_group(board, reached, score)
  local found = redis.call('ZRANGE', board, score, score, 'BYSCORE')
  local order = {}
  for i = #found, 1, -1 do -- BYSCORE is member ascending; Redis's REV order is descending
    order[#order + 1] = { found[i], math.huge, #order + 1 }
  end
  for first = 1, #order, HMGET_CHUNK do
    local chunk = {}
    for i = first, math.min(first + HMGET_CHUNK - 1, #order) do
      chunk[#chunk + 1] = order[i][1]
    end
    local times = redis.call('HMGET', reached, unpack(chunk))
    for i, at in ipairs(times) do
      order[first + i - 1][2] = tonumber(at) or math.huge
    end
  end
  table.sort(order, function(a, b)
    if a[2] ~= b[2] then
      return a[2] < b[2]
    end
    return a[3] < b[3]
  end)
  return order, redis.call('ZCOUNT', board, '(' .. score, '+inf')
end

-- Ranks `first` to `last` (0-based) of `board`, in tie order: member, score, member, score, ...; and
-- the tie groups it read, by score ({order, start}, as tie_group's).
local function tied_range(board, reached, first, last)
  local from = math.max(first - 1, 0)
  local window = redis.call('ZRANGE', board, from, last + 1, 'REV', 'WITHSCORES')
  local held = {}
  for i = 2, #window, 2 do
    held[window[i]] = (held[window[i]] or 0) + 1
  end
  local rows, groups = {}, {}
  for i = 1, #window / 2 do
    local rank, member, score = from + i - 1, window[2 * i - 1], window[2 * i]
    if rank >= first and rank <= last then
      if held[score] > 1 then
        local group = groups[score]
        if not group then
          local order, start = tie_group(board, reached, score)
          group = { order = order, start = start }
          groups[score] = group
        end
        member = group.order[rank - group.start + 1][1]
      end
      rows[#rows + 1] = member
      rows[#rows + 1] = score
    end
  end
  return rows, groups
end

-- The 0-based rank of `member` in its tie group.
local function rank_in(group, member)
  for i, entry in ipairs(group.order) do
    if entry[1] == member then
      return group.start + i - 1
    end
  end
end

-- `member`'s 0-based rank on `board` in tie order, and its `around` neighbours each side: the rank,
-- the first row's rank and the rows (member, score, ...); nil without an entry. Redis's rank first:
-- where no neighbour shares the member's score it is the answer, in one window read.
local function tied_around(board, reached, member, around)
  local found = redis.call('ZREVRANK', board, member, 'WITHSCORE')
  if not found then
    return nil
  end
  local rank, score = found[1], found[2]
  local first = math.max(rank - around, 0)
  local rows, groups = tied_range(board, reached, first, rank + around)
  local tied = groups[score] and rank_in(groups[score], member) or rank
  if tied ~= rank then
    first = math.max(tied - around, 0)
    rows = tied_range(board, reached, first, tied + around)
  end
  return { tied, first, rows }
end
