-- A GET of the URL given to wrk (with the headers given by -H), counted by status.
dofile("scripts/wrk/report.lua")

function init(args)
  statuses = {}
end
