"""Plots (issue 14) end to end: nxlua draws, Pillow decodes, matplotlib is the reference for
colormap tables and norms, pdftotext reads tick labels and titles (cairo's PDF keeps text;
its SVG draws glyphs as paths)."""
import json
import pathlib
import shutil
import subprocess
import threading
import time

import h5py
import numpy as np
import pytest
import requests

from conftest import BIN, ROOT

PIL = pytest.importorskip("PIL.Image")
matplotlib = pytest.importorskip("matplotlib")
from matplotlib import colors  # noqa: E402

DATA = pathlib.Path("/work/shared/data")
BAD = (211, 211, 211)


def lua(nxlua, code, cwd):
    r = nxlua("-e", code, cwd=str(cwd))
    assert r.returncode == 0, r.stderr
    return r.stdout


def fails(nxlua, code, cwd):
    r = nxlua("-e", code, cwd=str(cwd))
    assert r.returncode != 0, r.stdout
    return r.stderr


def axes_of(out):
    """The `left top width height` line a script printed after saving."""
    return [float(v) for v in out.split()[-4:]]


def cell(img, rect, rows, cols, r, c):
    """The colour at the centre of cell (r, c) of an image drawn with row 0 at the bottom."""
    left, top, w, h = rect
    x = int(left + (c + 0.5) * w / cols)
    y = int(top + h - (r + 0.5) * h / rows)
    return img.getpixel((x, y))[:3]


def mpl(cmap, x):
    return tuple(int(v) for v in matplotlib.colormaps[cmap](x, bytes=True)[:3])


def pdftext(path):
    if not shutil.which("pdftotext"):
        pytest.skip("pdftotext (poppler-utils) is not installed")
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def write_array(path, a):
    with h5py.File(path, "w") as f:
        f["a"] = a


# ---------------------------------------------------------------- colormaps, norms, masks

@pytest.mark.parametrize("name", ["viridis", "inferno", "magma", "plasma", "cividis", "turbo", "gray", "RdBu", "viridis_r"])
def test_colormap_tables_are_matplotlibs(nxlua, tmp_path, name):
    out = lua(nxlua, f'local t = plot.colormap("{name}"); for i = 0, 255 do print(t[i][0], t[i][1], t[i][2], t[i][3]) end', tmp_path)
    ours = np.array([[int(v) for v in line.split()] for line in out.splitlines()])
    theirs = matplotlib.colormaps[name].resampled(256)(np.arange(256), bytes=True)
    assert (ours == theirs).all()


def test_known_values_map_to_exact_colormap_pixels(nxlua, tmp_path):
    vals = np.array([[0.0, 0.1, 0.25, 0.5], [0.6, 0.75, 0.99, 1.0]])
    write_array(tmp_path / "v.h5", vals)
    out = lua(nxlua, """
        local a = nx.load("v.h5").a:read()
        local f = plot(a, {vmin = 0, vmax = 1, cmap = "magma", colorbar = false})
        f:save("v.png"); print(f:axes())""", tmp_path)
    img = PIL.open(tmp_path / "v.png").convert("RGB")
    assert img.size == (800, 600)
    rect = axes_of(out)
    norm = colors.Normalize(0, 1)
    for r in range(2):
        for c in range(4):
            assert cell(img, rect, 2, 4, r, c) == mpl("magma", norm(vals[r, c])), (r, c)


@pytest.mark.parametrize("scale,norm,values,vmin,vmax", [
    ("log", colors.LogNorm(1, 1e4), [1, 3, 10, 42, 100, 999, 5000, 10000], 1, 1e4),
    ("sqrt", colors.PowerNorm(0.5, 0, 100), [0, 1, 4, 9, 20, 49, 81, 100], 0, 100),
    ("symlog", colors.SymLogNorm(1, vmin=-100, vmax=100), [-100, -20, -1, -0.3, 0, 0.6, 7, 100], -100, 100),
    ("linear", colors.Normalize(-5, 5), [-5, -3.3, -1, 0, 0.01, 2, 4.9, 5], -5, 5),
])
def test_norms_put_values_where_matplotlib_does(nxlua, tmp_path, scale, norm, values, vmin, vmax):
    write_array(tmp_path / "n.h5", np.array([values], dtype=float))
    out = lua(nxlua, f"""
        local a = nx.load("n.h5").a:read()
        local f = plot(a, {{scale = "{scale}", vmin = {vmin}, vmax = {vmax}, colorbar = true}})
        f:save("n.png"); print(f:axes())""", tmp_path)
    img = PIL.open(tmp_path / "n.png").convert("RGB")
    for c, v in enumerate(values):
        assert cell(img, axes_of(out), 1, len(values), 0, c) == mpl("viridis", norm(v)), (scale, v)


def test_masked_pixels_get_the_bad_colour_and_leave_the_limits_alone(nxlua, tmp_path):
    # Pilatus: -1 gaps and -2 dead pixels in int32; Eiger: 2^32-1 in uint32; a pixel_mask
    pil = np.array([[0, 5, -1], [10, -2, 2]], dtype=np.int32)
    eig = np.array([[0, 5, 4294967295], [10, 3, 2]], dtype=np.uint32)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["pil"], f["eig"] = pil, eig
        f["nanf"] = np.array([[0, np.nan], [10, 4]])
        f["mask"] = np.array([[0, 0], [0, 1]], dtype=np.uint8)
    out = lua(nxlua, """
        local f = nx.load("m.h5")
        for _, name in ipairs({"pil", "eig"}) do
          local fig = plot(f[name]:read(), {percentiles = false, colorbar = false})
          fig:save(name .. ".png"); print(fig:axes())
        end
        local fig = plot(f.nanf:read(), {mask = f.mask, colorbar = false})
        fig:save("nan.png"); print(fig:axes())""", tmp_path)
    rects = [[float(v) for v in line.split()] for line in out.splitlines()]
    for name, a, rect in (("pil", pil, rects[0]), ("eig", eig, rects[1])):
        img = PIL.open(tmp_path / f"{name}.png").convert("RGB")
        valid = (a.astype(np.int64) >= 0) & (a != 4294967295)
        norm = colors.Normalize(0, 10)  # min and max of the unmasked values
        for r in range(2):
            for c in range(3):
                want = mpl("viridis", norm(float(a[r, c]))) if valid[r, c] else BAD
                assert cell(img, rect, 2, 3, r, c) == want, (name, r, c)
    img = PIL.open(tmp_path / "nan.png").convert("RGB")
    # NaN and the masked 4 are bad; 0 and 10 are the ends of the map
    assert cell(img, rects[2], 2, 2, 0, 1) == BAD
    assert cell(img, rects[2], 2, 2, 1, 1) == BAD
    assert cell(img, rects[2], 2, 2, 0, 0) == mpl("viridis", 0.0)
    assert cell(img, rects[2], 2, 2, 1, 0) == mpl("viridis", 1.0)


def test_percentile_autoscale_ignores_a_hot_pixel(nxlua, tmp_path):
    a = np.tile(np.arange(100, dtype=np.int32), (100, 1))
    a[50, 50] = 1_000_000
    write_array(tmp_path / "h.h5", a)
    out = lua(nxlua, """
        local fig = plot(nx.load("h.h5").a:read(), {colorbar = false})
        fig:save("h.png"); print(fig:axes())""", tmp_path)
    img = PIL.open(tmp_path / "h.png").convert("RGB")
    lo, hi = np.percentile(a, [0.5, 99.5])
    norm = colors.Normalize(lo, hi)
    rect = axes_of(out)
    for c in (0, 30, 70, 99):
        assert cell(img, rect, 100, 100, 10, c) == mpl("viridis", norm(float(a[10, c]))), c


def test_a_large_frame_keeps_a_single_peak(nxlua, tmp_path):
    a = np.ones((3262, 3108), dtype=np.uint32)
    a[1000, 2001] = 5000
    a[:, 1000:1300] = 4294967295  # Eiger gap columns (wide enough to cover whole pixels)
    write_array(tmp_path / "e.h5", a)
    out = lua(nxlua, """
        local fig = plot(nx.load("e.h5").a:read(), {scale = "log", percentiles = false, width = 400, height = 400})
        fig:save("e.png"); print(fig:axes())""", tmp_path)
    left, top, w, h = axes_of(out)
    img = np.asarray(PIL.open(tmp_path / "e.png").convert("RGB"))
    # one data pixel in 3262 x 3108 drawn on about 270 x 330 pixels is still there, in
    # the top colour (vmax is 5000, the gap's 2^32-1 left out), where it belongs
    ys, xs = np.nonzero((img == np.array(mpl("viridis", 1.0))).all(axis=2))
    inside = [(x, y) for x, y in zip(xs, ys) if left <= x < left + w and top <= y < top + h]
    assert len(inside) == 1
    x, y = inside[0]
    assert abs(x - (left + (2001.5 / 3108) * w)) <= 1.5
    assert abs(y - (top + h - (1000.5 / 3262) * h)) <= 1.5
    assert (img == np.array(BAD)).all(axis=2).sum() > 0.08 * w * h  # the gap


# ---------------------------------------------------------------- axes, ticks, labels

def test_tick_labels_and_titles_in_pdf(nxlua, tmp_path):
    lua(nxlua, """
        local x = array.linspace(0, 10, 101)
        local f = plot(x, x * 1000, {label = "rise"})
        f.title = "Calibration"; f.xlabel = "energy (keV)"; f.ylabel = "counts"
        f:save("t.pdf"); f:save("t.svg")
        local g = plot(array.arange(1, 1e6, 997.0), {logy = true, xlabel = "index"})
        g:save("log.pdf")""", tmp_path)
    text = pdftext(tmp_path / "t.pdf")
    for label in ["Calibration", "energy (keV)", "counts", "rise", "0", "2", "4", "6", "8", "10",
                  "2000", "4000", "6000", "8000", "10000"]:
        assert label in text.split() or label in text, label
    svg = (tmp_path / "t.svg").read_text()
    assert svg.startswith("<?xml") and "<svg" in svg and "glyph" in svg
    log = pdftext(tmp_path / "log.pdf")
    # decades as 10 with a raised exponent, in the order drawn
    assert "10" in log and "index" in log


def test_nxdata_from_nexusformat_plots_with_its_axes_and_labels(nxlua, tmp_path):
    nexus = pytest.importorskip("nexusformat.nexus")
    x = nexus.NXfield(np.linspace(0, 5, 51), name="x", units="mm")
    y = nexus.NXfield(np.linspace(-1, 1, 21), name="y", long_name="Height")
    z = nexus.NXfield(np.arange(21 * 51, dtype=float).reshape(21, 51), name="v")
    entry = nexus.NXentry(nexus.NXdata(z, [y, x], title="2-D scan"))
    entry.line = nexus.NXdata(nexus.NXfield([1.0, 4, 9, 16, 25], name="counts", units="counts"),
                              nexus.NXfield([0.1, 0.2, 0.3, 0.4, 0.5], name="tth", units="deg"))
    entry.title = "entry title"
    nexus.NXroot(entry).save(str(tmp_path / "scan.nxs"), "w")
    lua(nxlua, """
        local f = nx.load("scan.nxs")
        f.entry.data:plot():save("d.pdf")
        f:plot():save("root.pdf")
        f.entry.line:plot():save("line.pdf")""", tmp_path)
    text = pdftext(tmp_path / "d.pdf")
    for label in ["2-D scan", "x (mm)", "Height", "-1.0", "0.0", "1.0", "5"]:
        assert label in text, label
    assert pdftext(tmp_path / "root.pdf") == text  # @default / first NXdata
    line = pdftext(tmp_path / "line.pdf")
    for label in ["entry title", "tth (deg)", "counts (counts)"]:
        assert label in line, label


def test_nxdata_image_rows_go_up_and_axes_are_truthful(nxlua, tmp_path):
    # a 3 x 2 signal with a non-uniform x axis given as bin edges (n + 1 values)
    with h5py.File(tmp_path / "b.nxs", "w") as f:
        e = f.create_group("entry"); e.attrs["NX_class"] = "NXentry"
        d = e.create_group("data"); d.attrs.update({"NX_class": "NXdata", "signal": "z", "axes": ["y", "x"]})
        d["z"] = np.array([[0, 1], [2, 3], [4, 5]], dtype=float)
        d["x"] = np.array([0.0, 1.0, 4.0])
        d["y"] = np.array([10.0, 20.0, 30.0])
    out = lua(nxlua, """
        local fig = nx.load("b.nxs").entry.data:plot{colorbar = false}
        fig:save("b.png"); print(fig:axes())""", tmp_path)
    img = PIL.open(tmp_path / "b.png").convert("RGB")
    left, top, w, h = axes_of(out)
    norm = colors.Normalize(0, 5)
    # x runs 0..4: the first bin covers a quarter of the width; row 0 (y = 10) is at the bottom
    y0 = int(top + h * 5 / 6)
    assert img.getpixel((int(left + w * 0.125), y0))[:3] == mpl("viridis", norm(0))
    assert img.getpixel((int(left + w * 0.3), y0))[:3] == mpl("viridis", norm(1))
    assert img.getpixel((int(left + w * 0.2), int(top + h / 6)))[:3] == mpl("viridis", norm(4))


def test_frames_projections_and_real_cbf(nxlua, tmp_path):
    stack = np.random.default_rng(1).poisson(5, (6, 30, 40)).astype(np.int32)
    with h5py.File(tmp_path / "s.nxs", "w") as f:
        e = f.create_group("entry"); e.attrs["NX_class"] = "NXentry"
        d = e.create_group("data"); d.attrs.update({"NX_class": "NXdata", "signal": "data"})
        d["data"] = stack
    out = lua(nxlua, f"""
        local d = nx.load("s.nxs").entry.data
        print(pcall(d.plot, d))
        local fig = d:plot{{frame = 2, percentiles = false, colorbar = false}}
        fig:save("frame.png"); print(fig:axes())
        local p = d:project{{axis = 0, range = {{1, 4}}}}
        print(p, p:signal():sum())
        p:plot():save("proj.png")
        local c = detector.read("{DATA / 'cbf' / 'fit2d_data.cbf'}")
        plot(c, {{scale = "log"}}):save("cbf.png")""", tmp_path)
    lines = out.splitlines()
    assert lines[0].startswith("false") and "frame = 0" in lines[0] and "project" in lines[0]
    assert "sum over" in lines[2] and "[1:4]" in lines[2]
    assert float(lines[2].split()[-1]) == stack[1:4].sum()
    img = PIL.open(tmp_path / "frame.png").convert("RGB")
    rect = [float(v) for v in lines[1].split()]
    norm = colors.Normalize(stack[2].min(), stack[2].max())
    assert cell(img, rect, 30, 40, 7, 11) == mpl("viridis", norm(stack[2][7, 11]))
    cbf = np.asarray(PIL.open(tmp_path / "cbf.png").convert("RGB"))
    assert len(np.unique(cbf.reshape(-1, 3), axis=0)) > 50  # a real picture, not a blank


def test_figure_object_panels_and_lines(nxlua, tmp_path):
    out = lua(nxlua, """
        local fig = plot.figure{rows = 1, cols = 2}
        fig:image(array.arange(400):reshape({20, 20}), {cmap = "gray"})
        fig.title = "frame"
        fig:panel(1)
        fig:line(array.arange(20), array.arange(20) * 2, {label = "profile", marker = "o", errors = array.ones({20})})
        fig:line(array.arange(20), {label = "flat", color = "red"})
        fig:xlim(0, 30); fig:ylim(-5, 50); fig.xlabel = "pixel"
        print(fig.rows, fig.cols, fig.width, fig.height, fig.title)
        fig:save("two.pdf")
        local png = fig:png()
        print(#png, png:sub(2, 4))""", tmp_path)
    lines = out.splitlines()
    assert lines[0].split() == ["1", "2", "1040", "600", "nil"]
    assert lines[1].split()[1] == "PNG"
    text = pdftext(tmp_path / "two.pdf")
    for label in ["frame", "profile", "flat", "pixel", "30", "50"]:
        assert label in text, label


# ---------------------------------------------------------------- scripts, macros, sandbox

def test_script_writes_a_png_per_frame(nxlua, tmp_path):
    stack = np.arange(3 * 16 * 16, dtype=np.int32).reshape(3, 16, 16)
    with h5py.File(tmp_path / "run.nxs", "w") as f:
        f["frames"] = stack
    script = tmp_path / "each.lua"
    script.write_text("""
        local f <close> = nx.load(arg[1])
        for i = 0, f.frames.shape[1] - 1 do
          local fig = plot(f.frames[i], {title = "frame " .. i, cmap = "inferno"})
          assert(fig:save(string.format("frame_%03d.png", i)))
        end
    """)
    r = nxlua(str(script), "run.nxs", cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    for i in range(3):
        assert PIL.open(tmp_path / f"frame_{i:03d}.png").size == (800, 600)


def test_a_macro_writes_a_picture_per_run(tmp_path):
    """A beamline macro (nxlua macros) that plots each run's points at run.stop."""
    macros = tmp_path / "macros"
    macros.mkdir()
    (macros / "scanplot.lua").write_text(f"""
        local runs = {{}}
        on("run.start", "scanplot", function(e) runs[e.run] = {{x = {{}}, y = {{}}, id = e.scan_id}} end)
        on("point", "scanplot", function(e)
          local r = runs[e.run]; if r == nil then return end
          r.x[#r.x + 1] = e.motor; r.y[#r.y + 1] = e.counts
        end)
        on("run.stop", "scanplot", function(e)
          local r = runs[e.run]; if r == nil or #r.x == 0 then return end
          local fig = plot(r.x, r.y, {{marker = "o", title = "scan " .. r.id, xlabel = "motor", ylabel = "counts"}})
          assert(fig:save(string.format("{tmp_path}/scan_%s.pdf", r.id)))
          runs[e.run] = nil
        end)
    """)
    journal = tmp_path / "j.sqlite"

    def trigger(*args):
        r = subprocess.run([BIN, "trigger", *args, "--journal", str(journal)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()[1]

    # the first event makes the journal; the runner then joins the open run (it still
    # sees the run's start), as test_macros does
    first = trigger("run.start", "scan_id=7", "plan=ascan")
    log = open(tmp_path / "runner.log", "w")
    runner = subprocess.Popen([BIN, "macros", str(macros), "--journal", str(journal), "--poll", "0.005"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        for scan in (7, 8):
            uid = first if scan == 7 else trigger("run.start", f"scan_id={scan}", "plan=ascan")
            for m in range(1, 5):
                trigger("point", "--run", uid, f"motor={m}", f"counts={m * m * scan}")
            trigger("run.stop", "--run", uid, "status=success")
        deadline = time.time() + 60
        while time.time() < deadline and not (tmp_path / "scan_8.pdf").exists():
            time.sleep(0.1)
    finally:
        runner.terminate()
        runner.wait(60)
        log.close()
    text = (tmp_path / "runner.log").read_text()
    for scan in (7, 8):
        page = pdftext(tmp_path / f"scan_{scan}.pdf")
        assert f"scan {scan}" in page and "motor" in page and "counts" in page, text
    assert "AddressSanitizer" not in text and "failed" not in text, text


def test_nothing_is_written_to_a_pipe(nxlua, tmp_path):
    r = nxlua("-e", "plot({1, 2, 3}); oplot({3, 2, 1}):show()", cwd=str(tmp_path))
    assert r.returncode == 0 and r.stdout == "", (r.stdout, r.stderr)


def test_figures_reach_the_terminal_hook(nxlua, tmp_path):
    # NXLUA_PLOT forces a protocol even into a pipe (docs/terminal-graphics.md): the
    # figure of plot() goes through the executable's hook to TerminalGraphics
    r = nxlua("-e", "plot({1, 3, 2}, {width = 160, height = 100})", cwd=str(tmp_path),
              extra_env={"NXLUA_PLOT": "text", "COLUMNS": "40", "LINES": "20"})
    assert r.returncode == 0, r.stderr
    assert "\u2580" in r.stdout and "\x1b[" in r.stdout
    r = nxlua("-e", "local f = plot({1, 3, 2}); f:show()", cwd=str(tmp_path), extra_env={"NXLUA_PLOT": "none"})
    assert r.returncode == 0 and r.stdout == ""


def test_sandbox_returns_png_bytes(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    with h5py.File(folder / "f.nxs", "w") as f:
        f["frame"] = np.arange(64 * 64, dtype=np.int32).reshape(64, 64)
        e = f.create_group("entry"); e.attrs["NX_class"] = "NXentry"
        d = e.create_group("data"); d.attrs.update({"NX_class": "NXdata", "signal": "y", "axes": ["t"]})
        d["y"], d["t"] = np.array([3.0, 1, 2]), np.array([0.5, 1.5, 2.5])
        d["t"].attrs["units"] = "s"
    users = tmp_path / "users"
    r = subprocess.run([BIN, "serve", "adduser", str(users), "ray"], input="secret-pw\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen([BIN, "serve", str(folder), "--port", "0", "--host", "127.0.0.1",
                             "--users", str(users), "--allow-eval"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = [None]
        t = threading.Thread(target=lambda: line.__setitem__(0, proc.stdout.readline()), daemon=True)
        t.start(); t.join(60)
        assert line[0] and "listening on port" in line[0], line[0]
        url = f"http://127.0.0.1:{int(line[0].split()[-1])}/nxlua/eval"

        def ev(code):
            return requests.post(url, json={"code": code, "args": {}}, auth=("ray", "secret-pw"), timeout=120)

        r = ev("return plot(nx.load('/f.nxs').frame:read(), {cmap = 'plasma'}):png('array')")
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == "application/octet-stream"
        import io
        assert PIL.open(io.BytesIO(r.content)).size == (800, 600)
        r = ev("return plot({1, 4, 9}):png('base64')")
        import base64
        assert PIL.open(io.BytesIO(base64.b64decode(r.json()["result"]))).format == "PNG"
        r = ev("return plot({1, 2}, {width = 16000, height = 16000}):png()")
        assert r.status_code == 400 and "megapixels" in r.json()["error"]
        r = ev("return plot({1, 2}):save('/tmp/escape.png')")
        assert r.status_code == 400 and "not available" in r.json()["error"]
        # a remote NXdata plots by the same rules as a local one
        base = url.rsplit("/nxlua/eval", 1)[0]
        r = subprocess.run([BIN, "-e", f"""
            local r = nx.remote("{base}", {{user = "ray", password = "secret-pw"}})
            local d = r:load("/f.nxs").entry.data
            local fig = d:plot(); print(fig.xlabel, fig.ylabel); fig:save("remote.pdf")"""],
                           capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["t", "(s)", "y"]
    finally:
        proc.terminate()
        proc.wait(60)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("code,message", [
    ("plot(array.zeros({0}))", "empty"),
    ("plot({})", "empty"),
    ("plot(array.zeros({3, 4, 5}))", "frame"),
    ("plot({1, 2, 3}, {cmap = 'jet'})", "unknown colormap 'jet'"),
    ("plot({1, 2, 3}, {colour = 'red'})", "unknown option 'colour'"),
    ("plot({1, 2, 3}, {scale = 'cubic'})", "unknown scale"),
    ("plot({-1, -2}, {logy = true}):png()", "no positive y values"),
    ("plot({1, 2}, {1, 2, 3})", "must match"),
    ("plot({1, 2}):save('x.gif')", "unknown picture format"),
    ("plot(array.zeros({2, 2}), {mask = array.zeros({3, 3})})", "does not match"),
    ("plot(42)", "not plottable"),
    ("plot.figure{rows = 1, cols = 2}:panel(2)", "does not exist"),
])
def test_bad_inputs_give_clear_errors(nxlua, tmp_path, code, message):
    assert message in fails(nxlua, code, tmp_path)


def test_unwritable_paths_return_nil_and_a_message(nxlua, tmp_path):
    out = lua(nxlua, """
        for _, ext in ipairs({"png", "svg", "pdf"}) do print(plot({1, 2}):save("no/such/dir/x." .. ext)) end""", tmp_path)
    lines = out.splitlines()
    assert len(lines) == 3 and all(l.startswith("nil\tno/such/dir/x.") and "cannot write" in l for l in lines), lines


def test_bad_files_give_clear_errors(nxlua, tmp_path):
    with h5py.File(tmp_path / "bad.nxs", "w") as f:
        e = f.create_group("entry"); e.attrs["NX_class"] = "NXentry"
        d = e.create_group("data"); d.attrs.update({"NX_class": "NXdata", "signal": "z", "axes": ["y", "x"]})
        d["z"] = np.zeros((3, 4))
        d["x"] = np.arange(7.0)  # neither 4 centres nor 5 edges
        d["y"] = np.arange(3.0)
        g = e.create_group("nosignal"); g.attrs["NX_class"] = "NXdata"
        g["a"], g["b"] = np.zeros(3), np.zeros(3)
        e.create_dataset("huge", shape=(20000, 20000), dtype="f8", chunks=(1000, 1000))
    err = fails(nxlua, 'nx.load("bad.nxs").entry.data:plot()', tmp_path)
    assert "axis 'x' has 7 values for 4 points" in err
    err = fails(nxlua, 'nx.load("bad.nxs").entry.nosignal:plot()', tmp_path)
    assert "no NXdata with a valid signal" in err and "/entry/nosignal" in err
    err = fails(nxlua, 'nx.load("bad.nxs").entry.huge:plot()', tmp_path)
    assert "too big to plot whole" in err and "0:2048, 0:2048" in err


def test_odd_data_give_pictures_with_a_note(nxlua, tmp_path):
    lua(nxlua, """
        plot(array.full({4, 4}, 0/0)):save("nan.pdf")
        plot(array.full({4, 4}, 7.0)):save("const.pdf")
        plot(array.full({4, 4}, -3.0), {scale = "log"}):save("neg.pdf")
        plot({5, 5, 5}):save("flat.pdf")""", tmp_path)
    assert "no unmasked values" in pdftext(tmp_path / "nan.pdf")
    assert "constant value 7" in pdftext(tmp_path / "const.pdf")
    assert "no positive values" in pdftext(tmp_path / "neg.pdf")
    assert "constant value 5" in pdftext(tmp_path / "flat.pdf")


def test_help_documents_plot(nxlua, tmp_path):
    out = lua(nxlua, "help(plot); help(plot.figure)", tmp_path)
    assert "oplot" in out and "percentiles" in out and "rows" in out


def test_docs_pictures_script_runs(nxlua, tmp_path):
    """scripts/examples/plots_doc.lua makes docs/plots.md's pictures from the demo scan."""
    import sys
    r = subprocess.run([sys.executable, str(ROOT / "scripts/examples/make_demo.py"), str(tmp_path / "scan.nxs")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (tmp_path / "out").mkdir()
    r = nxlua(str(ROOT / "scripts/examples/plots_doc.lua"), "scan.nxs", "out", cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    for name, size in [("frame", (720, 360)), ("curve", (720, 360)), ("panels", (1040, 380)), ("project", (720, 360))]:
        img = PIL.open(tmp_path / "out" / f"plots_{name}.png")
        assert img.size == size
        assert len(img.convert("RGB").getcolors(1 << 20)) > 20  # drawn, not blank


@pytest.mark.parametrize("protocol,marker", [("kitty", "\x1b_G"), ("text", "\u2580"), ("none", None)])
def test_repl_on_a_terminal_shows_the_figure(env, protocol, marker):
    """At the REPL on a pseudo-terminal plot() draws the figure inline (the protocol forced
    with NXLUA_PLOT), then prints the figure object; NXLUA_PLOT=none draws nothing."""
    import pexpect
    e = dict(env)
    e["NXLUA_PLOT"] = protocol
    p = pexpect.spawn(BIN, env=e, encoding="utf-8", timeout=30, dimensions=(40, 100))
    try:
        p.expect("Ctrl-D exits")
        p.expect("> ")
        p.sendline("plot({1, 3, 2}, {width = 200, height = 150})")
        p.expect(r"plot\.Figure 200x150, 1 panel")
        shown = p.before
        if marker is None:
            assert "\x1b_G" not in shown and "\u2580" not in shown
        else:
            assert marker in shown
        p.expect("> ")
        p.sendeof()
        p.expect(pexpect.EOF)
    finally:
        p.terminate(force=True)


def test_eiger_pixel_mask_found_next_to_the_data(nxlua, tmp_path):
    """An Eiger file: the frame is uint32 with gap pixels at 2^32-1, and
    /entry/instrument/detector/detectorSpecific/pixel_mask marks dead pixels: both are
    drawn in the bad colour and left out of the limits."""
    frame = np.array([[1, 2, 3], [4, 4294967295, 6]], dtype=np.uint32)
    mask = np.array([[0, 0, 1], [0, 0, 0]], dtype=np.uint32)
    with h5py.File(tmp_path / "eiger.nxs", "w") as f:
        e = f.create_group("entry"); e.attrs["NX_class"] = "NXentry"
        det = e.create_group("instrument/detector")
        det.create_group("detectorSpecific")["pixel_mask"] = mask
        d = e.create_group("data"); d.attrs.update({"NX_class": "NXdata", "signal": "data"})
        d["data"] = frame[np.newaxis]  # (1, 2, 3): one frame, the size-1 axis dropped
    out = lua(nxlua, """
        local fig = nx.load("eiger.nxs").entry.data:plot{percentiles = false, colorbar = false}
        fig:save("e.png"); print(fig:axes())""", tmp_path)
    img = PIL.open(tmp_path / "e.png").convert("RGB")
    rect = axes_of(out)
    norm = colors.Normalize(1, 6)  # 3 (masked) and the gap left out
    for r in range(2):
        for c in range(3):
            masked = mask[r, c] or frame[r, c] == 4294967295
            want = BAD if masked else mpl("viridis", norm(float(frame[r, c])))
            assert cell(img, rect, 2, 3, r, c) == want, (r, c)


def test_start_up_does_not_load_cairo(nxlua, tmp_path):
    """libcairo is opened with dlopen when the first figure is drawn, not at start-up."""
    maps = 'local f = io.open("/proc/self/maps"); local m = f:read("a"); f:close(); return m'
    out = lua(nxlua, f"local m = (function() {maps} end)(); print(m:find('libcairo', 1, true) ~= nil)\n"
                     f"plot({{1, 2}}):png(); print(((function() {maps} end)()):find('libcairo', 1, true) ~= nil)", tmp_path)
    assert out.split() == ["false", "true"]
    if shutil.which("readelf"):
        needed = subprocess.run(["readelf", "-d", BIN], capture_output=True, text=True).stdout
        assert "libcairo" not in needed and "libpng" not in needed


def test_repl_kitty_bytes_decode_to_the_saved_png_and_sixel_is_framed(env, tmp_path):
    """The REPL's inline picture follows the protocols: kitty's base64 chunks of at most
    4096 bytes, m=1 on all but the last (m=0), decode to a PNG with the pixels fig:save
    writes; sixel comes in one DCS string whose raster attributes are the figure's size."""
    import base64
    import io
    import re
    import pexpect
    saved = tmp_path / "saved.png"
    shown = {}
    for protocol in ("kitty", "sixel"):
        e = dict(env)
        e["NXLUA_PLOT"] = protocol
        p = pexpect.spawn(BIN, env=e, timeout=30, dimensions=(60, 200))
        try:
            p.expect(b"Ctrl-D exits")
            p.expect(b"> ")
            p.sendline(b"fig = plot({1, 3, 2, 5}, {width = 240, height = 160})")  # shown when made
            p.expect(b"\n> ")
            shown[protocol] = p.before
            p.sendline(f'fig:save("{saved}")'.encode())
            p.expect(b"\n> ")
            p.sendeof()
            p.expect(pexpect.EOF)
        finally:
            p.terminate(force=True)
    chunks = re.findall(rb"\x1b_G([^;\x1b]*);([A-Za-z0-9+/=]*)\x1b\\", shown["kitty"])
    assert chunks, shown["kitty"][:200]
    payload = b""
    for i, (keys, data) in enumerate(chunks):
        assert len(data) <= 4096
        flags = dict(k.split(b"=") for k in keys.split(b","))
        assert flags[b"m"] == (b"0" if i == len(chunks) - 1 else b"1"), (i, keys)
        if i == 0:
            assert flags[b"a"] == b"T" and flags[b"f"] == b"100"
        payload += data
    inline = PIL.open(io.BytesIO(base64.b64decode(payload))).convert("RGBA")
    on_disk = PIL.open(saved).convert("RGBA")
    assert inline.size == on_disk.size == (240, 160)
    assert np.array_equal(np.asarray(inline), np.asarray(on_disk))
    sixel = shown["sixel"]
    assert sixel.count(b"\x1bP") == 1 and sixel.count(b"\x1b\\") >= 1
    body = sixel[sixel.index(b"\x1bP"):sixel.index(b"\x1b\\", sixel.index(b"\x1bP"))]
    assert re.match(rb"\x1bP[0-9;]*q\"1;1;240;160#", body), body[:40]
