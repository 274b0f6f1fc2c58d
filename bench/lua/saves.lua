-- Saves of one session per thread, for bench/measure/saves.py: run with as many threads as
-- connections (-tN -cN), so each thread's requests and answers alternate on its one connection.
-- wrk -s saves.lua URL -- FILE MODE
-- FILE: one line per session: COOKIE \t ETAG \t WHOLE (a full save's body) \t PATCH (a merge patch's).
-- MODE: "save" (PATCH the whole body), "save-if-match" (the same, with If-Match on the version the
-- last answer named), "merge" (PATCH the merge patch, application/merge-patch+json). Every mode keeps
-- the ETag of each answer, so wrk does the same work whichever is measured.
-- done() prints one JSON line, as bench/lua/replay.lua does.

local counter = 0

function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
end

function init(args)
  local file = args[1]
  mode = args[2]
  local line_number = 0
  for line in io.lines(file) do
    if line_number == index then
      cookie, etag, whole, patch = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    end
    line_number = line_number + 1
  end
end

function request()
  local headers = { Cookie = cookie }
  if mode == "merge" then
    headers["Content-Type"] = "application/merge-patch+json"
    return wrk.format("PATCH", "/api/playerstate", headers, patch)
  end
  headers["Content-Type"] = "application/json"
  if mode == "save-if-match" then
    headers["If-Match"] = etag
  end
  return wrk.format("PATCH", "/api/playerstate", headers, whole)
end

function response(status, headers, body)
  etag = headers["etag"] or headers["ETag"] or etag
end

-- The figures, as every script here reports them (report.lua, beside this file).
done = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "report.lua")
