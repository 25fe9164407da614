-- The pictures of docs/plots.md, from the demo scan (scripts/examples/make_demo.py).
-- usage: nxlua scripts/examples/plots_doc.lua scan.nxs OUTDIR
-- (Tests/CLITests/test_plot.py runs it; docs/images/plots_*.png are its output.)
local scan, out = arg[1] or "scan.nxs", arg[2] or "docs/images"
local f <close> = nx.load(scan)
local d = f.entry.data

-- one frame of the 3-D stack, log colours (the dead column -2 is masked: light gray)
local fig = d:plot{frame = 10, scale = "log", width = 720, height = 360}
assert(fig:save(out .. "/plots_frame.png"))

-- a rocking curve: the counts around the Bragg spot, frame by frame, with sqrt(N) errors
local roi = d.counts[":, 55:65, 295:305"]:astype("float64")
local curve = roi:sum({1, 2})
local omega = d.omega:read()
local rc = plot(omega, curve, {errors = curve:sqrt(), marker = "o", label = "spot (10 x 10 pixels)",
                               width = 720, height = 360})
rc.title = "rocking curve"; rc.xlabel = "omega (degree)"; rc.ylabel = "counts"
assert(rc:save(out .. "/plots_curve.png"))

-- frame and profile side by side: a figure with two panels
local two = plot.figure{rows = 1, cols = 2, width = 1040, height = 380}
two:image(d.counts[10], {scale = "sqrt", cmap = "inferno"})
two.title = "frame 10 (sqrt)"
two:panel(1)
local row = d.counts["10, 60, :"]
two:line(d.x:read(), row, {label = "row 60"})
two:line(d.x:read(), d.counts["9, 60, :"], {label = "row 60, frame 9"})
two.title = "profile"; two.xlabel = "x (mm)"; two.ylabel = "counts"
two:logy()
assert(two:save(out .. "/plots_panels.png"))

-- frames 5 to 15 summed, as nexusformat's NXdata.project
local p = d:project{axis = 0, range = {5, 15}}
assert(p:plot{scale = "log", cmap = "magma", width = 720, height = 360}:save(out .. "/plots_project.png"))
print("wrote 4 pictures to " .. out)
