#!lua flags=allow-cross-slot-keys
-- Admit a request: count it against each of its rate limits and, when every limit allows it,
-- append its command to the command stream. One script, so a write's admission and its XADD are
-- one round trip, and a refused write is never published. See services/gateway/store.py. For a
-- write, every key declared here carries the partition's hash tag: on a Redis Cluster they share a slot.
--
-- Each limit is GCRA (the generic cell rate algorithm): its key holds the theoretical arrival
-- time (TAT, ms); a limit of `count` per `period` allows a burst of `count`, then one every
-- period/count. A limit that allows the request counts it even when another refuses it.
--
-- KEYS: one key per limit, then (to publish) the command stream.
-- ARGV: the number of limits n; each limit's count and period in ms; then, to publish, the caller's
--       session key ("" for none), which must exist, the stream's trim MINID and the entry's fields
--       and values. The session key is passed by name, not declared: on a cluster it lives in a slot
--       of its own, which this script may read when the same master serves it (the flag above; the
--       gateway draws session ids so that it does), and otherwise returns -2 at once.
-- Returns -1 when the session is gone, -2 when this master does not serve it (nothing counted
-- either way); when admitted, the published entry's id (the version a save's command writes), or 0
-- when there was nothing to publish; else the ms until the slowest refusing limit would allow it.
local n = tonumber(ARGV[1])
local session = ARGV[2 * n + 2]
if session and session ~= '' then
  local found = redis.pcall('EXISTS', session)
  if type(found) == 'table' then
    return -2
  elseif found == 0 then
    return -1
  end
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local wait = 0
for i = 1, n do
  local count, period = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local tat = math.max(tonumber(redis.call('GET', KEYS[i]) or 0), now) + period / count
  local allowed_at = tat - period
  if allowed_at > now then
    wait = math.max(wait, allowed_at - now)
  else
    redis.call('SET', KEYS[i], string.format('%.3f', tat), 'PX', math.ceil(tat - now))
  end
end
if wait > 0 then
  return math.ceil(wait)
end
if #KEYS > n then
  return redis.call('XADD', KEYS[n + 1], 'MINID', '~', ARGV[2 * n + 3], '*', unpack(ARGV, 2 * n + 4))
end
return 0
