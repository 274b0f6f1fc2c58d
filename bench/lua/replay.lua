-- Replays requests prepared by bench/load.py: one per line, METHOD \t PATH \t COOKIE \t BODY.
-- wrk -s replay.lua URL -- FILE THREADS
-- Thread i keeps lines i, i + THREADS, ... and cycles through them, so concurrent requests carry
-- different sessions (the file holds more sessions than connections). Requests are formatted
-- once in init(): the load generator spends its CPU on sockets, not on Lua.
-- done() prints one JSON line that bench/load.py parses.

local counter = 0

function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
end

function init(args)
  local file, threads = args[1], tonumber(args[2])
  prepared = {}
  local line_number = 0
  for line in io.lines(file) do
    if line_number % threads == index then
      local method, path, cookie, body = line:match("^(%u+)\t([^\t]+)\t([^\t]*)\t(.*)$")
      local headers = {}
      if cookie ~= "" then headers["Cookie"] = cookie end
      if body == "" then
        body = nil
      else
        headers["Content-Type"] = "application/json"
      end
      prepared[#prepared + 1] = wrk.format(method, path, headers, body)
    end
    line_number = line_number + 1
  end
  position = 0
end

function request()
  position = position % #prepared + 1
  return prepared[position]
end

-- The figures, as every script here reports them (report.lua, beside this file).
done = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "report.lua")
