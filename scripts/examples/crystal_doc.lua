-- The pictures of docs/crystal.md, from a simulated scan (the one the page's examples use).
-- usage: nxlua scripts/examples/crystal_doc.lua OUTDIR
-- (Tests/CLITests/test_crystal.py runs it; docs/images/crystal_*.png are its output.)
local out = arg[1] or "docs/images"
local c, s = math.cos(math.rad(30)), math.sin(math.rad(30))
local g = crystal.geometry{
  distance = 150, pixel_size = 0.172, beam_center_x = 490.5, beam_center_y = 97.5,
  wavelength = 0.5, phi_start = 0, phi_step = 0.5, chi = -2, omega = 1,
  unit_cell = {7.1, 7.1, 9.6, 90, 90, 120},
  orientation_matrix = {{c, -s, 0}, {s, c, 0}, {0, 0, 1}},
}
local stack = os.tmpname()
os.remove(stack)   -- a name only: the stacker writes a new file
local sim = crystal.simulate{geometry = g, frames = 40, modules = {1, 2}, seed = 1, mosaic = 0.5,
                             intensity = {5e3, 2e5}, background = 5}
sim:write_stack(stack, {quiet = true})

-- the conventions on the detector: 2 theta and the azimuth of every pixel of frame 0,
-- the beam centre marked (x the column, y the row, both from 0 at the lower left)
local fig = plot.figure{rows = 2, cols = 1, width = 980, height = 560}
fig:image(g:frame("polar", 0, sim.rows, sim.columns), {cmap = "viridis"})
fig:line({g.beam_center_x}, {g.beam_center_y}, {marker = "+", line = false, color = "red", label = "beam centre"})
fig.title = "polar angle 2 theta (degrees)"
fig.xlabel, fig.ylabel = "x (column)", "y (row)"
fig:panel(1)
fig:image(g:frame("azimuthal", 0, sim.rows, sim.columns), {cmap = "RdBu"})
fig:line({g.beam_center_x}, {g.beam_center_y}, {marker = "+", line = false, color = "red", label = "beam centre"})
fig.title = "azimuthal angle atan2(-v_y, v_z) (degrees)"
fig.xlabel, fig.ylabel = "x (column)", "y (row)"
assert(fig:save(out .. "/crystal_geometry.png"))

-- a frame with the peaks find_peaks found near it and where the simulator put them
local f <close> = nx.load(stack)
local data = f.entry.instrument.detector.data
local peaks = crystal.find_peaks(data, {threshold = 60})
local z = 20
local fx, fy, tx, ty = {}, {}, {}, {}
for i = 1, #peaks do
  if math.abs(peaks[i].z - z) < 3 then fx[#fx + 1] = peaks[i].x; fy[#fy + 1] = peaks[i].y end
end
for _, r in ipairs(sim.reflections) do
  if math.abs(r.z - z) < 3 then tx[#tx + 1] = r.x; ty[#ty + 1] = r.y end
end
local frame = plot.figure{width = 980, height = 330}
frame:image(data[z], {scale = "log", cmap = "viridis"})
frame:line(tx, ty, {marker = "s", line = false, color = "C1", label = "simulated (centre within 3 frames)"})
frame:line(fx, fy, {marker = "x", line = false, color = "red", label = "found by crystal.find_peaks"})
frame.title = string.format("frame %d of the simulated scan (log scale)", z)
frame.xlabel, frame.ylabel = "x (column)", "y (row)"
assert(frame:save(out .. "/crystal_peaks.png"))

-- the scan in reciprocal space: the l = 0 plane of v / n (gray: not measured), the same
-- after symmetrizing by 6/mmm, and what crystal.pdf transforms for the difference PDF:
-- the Bragg peaks punched, the holes filled from their shells, the edges tapered
local r = crystal.transform(data, {geometry = g, grid = {start = {-4, -4, -3}, stop = {4, 4, 3}, step = {0.04, 0.04, 0.1}}})
local sym = crystal.symmetrize(r, "6/mmm")
local pdf = crystal.pdf(sym, {punch = 0.2, taper = 0.1, geometry = g})
local l0 = r.v.shape[1] // 2
local space = plot.figure{rows = 1, cols = 3, width = 980, height = 360}
space:image(r.v[l0] / r.n[l0], {scale = "log", cmap = "viridis", colorbar = false})
space.title = "v / n at l = 0 (h, k from -4 to 4)"
space.xlabel, space.ylabel = "h index", "k index"
space:panel(1)
space:image(sym.v[l0] / sym.n[l0], {scale = "log", cmap = "viridis", colorbar = false})
space.title = "symmetrized by 6/mmm"
space.xlabel, space.ylabel = "h index", "k index"
space:panel(2)
space:image(pdf.difference_input[l0], {scale = "log", cmap = "viridis", colorbar = false})
space.title = "punched, filled, tapered (pdf input)"
space.xlabel, space.ylabel = "h index", "k index"
assert(space:save(out .. "/crystal_pdf.png"))
os.remove(stack)
