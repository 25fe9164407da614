-- Alerts when too many pixels of a frame are saturated: prints a line per frame above
-- the limit (the runner's log) and appends it to <stack>_alerts.txt, which a beamline
-- display or a mail script can follow. Set the thresholds below.
macro.heavy()                -- it reads every frame: the runner's batch process
local saturation = 1000000   -- counts at or above which a pixel is saturated
local limit = 10             -- saturated pixels that make a frame worth an alert

on("frames.ready", "saturation", function(e)
  local block = macro.frames(e)
  local counts = block:ge(saturation):sum({1, 2}):totable()
  local alerts = {}
  for i, n in ipairs(counts) do
    if n > limit then
      -- the index in the stack, and the detector's own file (replays and `trigger` may lack it)
      local source = e.sources and e.sources[i] and (" (" .. e.sources[i] .. ")") or ""
      alerts[#alerts + 1] = string.format("run %s frame %d%s: %d saturated pixels (limit %d)", e.run, e.first + i - 1, source, n, limit)
    end
  end
  if #alerts == 0 then return end
  local log = assert(io.open(e.file:gsub("%.nxs$", "") .. "_alerts.txt", "a"))
  for _, a in ipairs(alerts) do print("ALERT " .. a); log:write(a, "\n") end
  log:close()
end)
