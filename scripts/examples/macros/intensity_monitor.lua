-- Per-frame total intensity: each frames.ready adds the total counts of its frames
-- (pixels below 0, the gaps and bad pixels of a Pilatus, are left out); run.stop writes
-- them as a 1-D NXdata (total against frame index): <stack>_intensity.nxs.
macro.heavy()   -- it reads every frame: the runner's batch process, below quick alerts
local runs = {}

on("frames.ready", "monitor", function(e)
  local r = runs[e.run] or { totals = {} }
  runs[e.run] = r
  local block = macro.frames(e)
  local valid = block:maximum(0)                 -- negative pixels count as 0
  local totals = valid:sum({1, 2}):totable()     -- one number per frame (int64 sums of integer frames)
  for i, t in ipairs(totals) do r.totals[e.first + i] = t end   -- Lua tables are 1-based
end)

on("run.stop", "monitor", function(e)
  local r = runs[e.run]
  if r == nil then return end
  local n = 0
  for i in pairs(r.totals) do if i > n then n = i end end
  local values, index = {}, {}
  for i = 1, n do values[i] = r.totals[i] or 0 / 0; index[i] = i - 1 end
  local out = e.file:gsub("%.nxs$", "") .. "_intensity.nxs"
  macro.write_process(out, "intensity", {
    parameters = { frames = n, run = e.run },
    data = { signal = nx.field(array.from(values, "float64"), { name = "total", units = "counts" }),
             axes = { nx.field(array.from(index, "int64"), { name = "frame" }) },
             title = "total intensity per frame" },
  })
  runs[e.run] = nil
end)
