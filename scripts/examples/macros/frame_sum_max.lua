-- Live frame sum and maximum, like NXRefine's nxmax step but streaming: each
-- frames.ready adds its frames to running sum and max images; run.stop writes them
-- (with the frame count) as an NXprocess next to the stack: <stack>_summax.nxs.
-- Sum and max do not depend on how the frames were split into events, so a replay
-- (nxlua replay) gives the same result as the live run.
macro.heavy()    -- it reads every frame: the runner's batch process, below quick alerts
local runs = {}   -- by run uid: {sum=, max=, frames=, seen={}}

on("run.start", "summax", function(e)
  runs[e.run] = { frames = 0, seen = {} }
end)

on("frames.ready", "summax", function(e)
  local r = runs[e.run]
  if r == nil then r = { frames = 0, seen = {} }; runs[e.run] = r end
  -- idempotent: a range delivered again after a crash is not counted twice
  if r.seen[e.key] then return end
  local block = macro.frames(e)                     -- (n, y, x) in the detector's dtype
  if r.sum == nil then
    r.sum, r.max = block:sum(0), block:max(0)        -- integer sums accumulate in int64
  else
    -- in place, frame by frame: no image-sized temporaries at 100 frames/s
    for k = 0, #block - 1 do
      local frame = block[k]
      r.sum:add_(frame)
      r.max:maximum_(frame)
    end
  end
  r.frames = r.frames + e.count
  r.seen[e.key] = true
end)

on("run.stop", "summax", function(e)
  local r = runs[e.run]
  if r == nil or r.sum == nil then return end
  local out = e.file:gsub("%.nxs$", "") .. "_summax.nxs"
  macro.write_process(out, "summax", {
    parameters = { frames = r.frames, run = e.run },
    data = { signal = nx.field(r.sum, { name = "sum" }), title = "sum of frames" },
    fields = { maximum = r.max },
  })
  runs[e.run] = nil
end)
