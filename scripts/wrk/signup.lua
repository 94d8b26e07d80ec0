-- Public JSON signups to the form at the URL given to wrk, each with a new address
-- (LOAD_RUN keeps runs apart), ticking the list in LOAD_LIST; counted by status.
dofile("scripts/wrk/report.lua")

local counter = 0
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("thread_id", next_id)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  run = os.getenv("LOAD_RUN") or "0"
  list = os.getenv("LOAD_LIST")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"email": "load-%s-%d-%d@example.org", "consents": ["%s"], "fields": {}}', run, thread_id, counter, list)
  return wrk.format(nil, nil, nil, body)
end
