"""crystal.transform: the transform to reciprocal space against an independent numpy
forward splat (NXRefine's equations written out with numpy, np.bincount on voxel
indices), Bragg peaks of a simulated scan at integer (h, k, l), their integrated
intensity, NXRefine's output layout read by nexusformat, and errors."""
import json
import math
import subprocess
import time

import h5py
import hdf5plugin  # noqa: F401  (the stack is bitshuffle/LZ4)
import numpy as np
import pytest

from conftest import BIN
from test_crystal import bimat, omat, rotmat  # NXRefine's equations in numpy, written once

RAD = math.pi / 180
ROWS, COLS, FRAMES = 195, 487, 24


def numpy_splat(frames, p, grid, mask2d=None, mask3d=None, weights=None, monitor=None, transmission=1.0, polarization=None,
                oversample=1):
    """The forward splat written from NXRefine's equations (nxrefine.py) with numpy; with
    oversample = s, each pixel is s x s sub-pixels at (i + 0.5) / s - 0.5 of a pixel from its
    centre, each carrying I / s^2 and weight w / s^2."""
    if oversample > 1:
        size = np.array(grid["size"], int)
        v, n = np.zeros((size[2], size[1], size[0])), np.zeros((size[2], size[1], size[0]))
        for sy in range(oversample):
            for sx in range(oversample):
                d = [(sx + 0.5) / oversample - 0.5, (sy + 0.5) / oversample - 0.5]
                q = dict(p, beam_center_x=p["beam_center_x"] - d[0], beam_center_y=p["beam_center_y"] - d[1])
                vs, ns = numpy_splat(frames, q, grid, mask2d, mask3d, weights, monitor, transmission, polarization)
                v += vs / oversample ** 2
                n += ns / oversample ** 2
        return v, n
    o, s, size = (np.array(grid[k], float) for k in ("origin", "step", "size"))
    size = size.astype(int)
    nvox = int(np.prod(size))
    v, n = np.zeros(nvox), np.zeros(nvox)
    D = np.linalg.inv(rotmat(1, p["roll"]) @ rotmat(2, p["pitch"]) @ rotmat(3, p["yaw"]))
    Oi = np.linalg.inv(omat(p["detector_orientation"]))
    inv_ub = np.linalg.inv(np.array(p["orientation_matrix"]) @ np.linalg.inv(bimat(*p["unit_cell"])))
    y, x = np.mgrid[0:frames.shape[1], 0:frames.shape[2]]
    det = np.stack([x.ravel() - p["beam_center_x"], y.ravel() - p["beam_center_y"], np.zeros(x.size)])
    lab0 = np.linalg.inv(D) @ (p["pixel_size"] * Oi @ det) + np.array([[p["distance"]], [0], [0]])
    offset = np.array(p.get("sample_offset", [0, 0, 0]), float)
    mean_monitor = None if monitor is None else np.mean(monitor)
    for z in range(frames.shape[0]):
        w = 1.0 if weights is None else weights[z]
        if w <= 0:
            continue
        phi = p["phi_start"] + p["phi_step"] * z
        G = rotmat(2, p["theta"]) @ rotmat(3, p["omega"]) @ rotmat(1, p["chi"]) @ rotmat(3, phi)
        lab = lab0 - (G @ offset)[:, None]
        unit = lab / np.linalg.norm(lab, axis=0)
        q = G.T @ ((unit - np.array([[1], [0], [0]])) / p["wavelength"])
        hkl = inv_ub @ q
        idx = np.floor((hkl - o[:, None]) / s[:, None] + 0.5).astype(np.int64)
        img = frames[z].ravel().astype(float)
        good = (img >= 0) & (img < np.iinfo(np.int32).max)
        good &= np.all((idx >= 0) & (idx < size[:, None]), axis=0)
        if mask2d is not None:
            good &= mask2d.ravel() == 0
        if mask3d is not None:
            good &= mask3d[z].ravel() == 0
        c = np.full(img.size, 1.0 / transmission)
        if monitor is not None:
            c /= monitor[z] / mean_monitor
        if polarization is not None:
            l0 = lab0 / np.linalg.norm(lab0, axis=0)
            cos2t = l0[0]
            perp = lab0[1] ** 2 + lab0[2] ** 2
            cos2chi = np.where(perp > 0, (lab0[1] ** 2 - lab0[2] ** 2) / np.where(perp > 0, perp, 1), 1)
            c /= 0.5 * (1 + cos2t ** 2 - polarization * cos2chi * (1 - cos2t ** 2))
        lin = (idx[2] * size[1] + idx[1]) * size[0] + idx[0]
        v += np.bincount(lin[good], weights=(img * c * w)[good], minlength=nvox)
        n += np.bincount(lin[good], minlength=nvox) * w
    return v.reshape(size[2], size[1], size[0]), n.reshape(size[2], size[1], size[0])


GEOMETRY = {
    "distance": 150, "pixel_size": 0.172, "beam_center_x": 243.5, "beam_center_y": 97.5,
    "wavelength": 0.5, "phi_start": 0, "phi_step": 0.5, "chi": -2, "omega": 1, "theta": 0,
    "yaw": 0, "pitch": 0, "roll": 0, "detector_orientation": "-y +z -x",
    "unit_cell": [7.1, 7.1, 9.6, 90, 90, 120],
    "orientation_matrix": [[math.cos(30 * RAD), -math.sin(30 * RAD), 0], [math.sin(30 * RAD), math.cos(30 * RAD), 0], [0, 0, 1]],
}


def lua_table(p):
    def val(x):
        if isinstance(x, str):
            return json.dumps(x)
        if isinstance(x, (list, tuple)):
            return "{" + ", ".join(val(e) for e in x) + "}"
        return repr(float(x))
    if isinstance(p, (list, tuple)):
        return val(p)
    return "{" + ", ".join(f"{k} = {val(x)}" for k, x in p.items()) + "}"


def run(code, timeout=300):
    r = subprocess.run([BIN, "-e", code], capture_output=True, text=True, timeout=timeout)
    return r


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """A small simulated scan (one Pilatus module, 24 frames) with its true reflections."""
    tmp = tmp_path_factory.mktemp("transform")
    stack = tmp / "scan.nxs"
    r = run(f"""
        local g = crystal.geometry{lua_table(GEOMETRY)}
        local s = crystal.simulate{{geometry = g, frames = {FRAMES}, modules = {{1, 1}}, seed = 3, mosaic = 0.3,
                                   intensity = {{2e4, 2e5}}, background = 0, dead_pixels = 0, hot_pixels = 0}}
        s:write_stack({json.dumps(str(stack))}, {{quiet = true}})
        for _, r in ipairs(s.reflections) do
          print(string.format("%d %d %d %.6f %.6f %.6f %.6f", r.h, r.k, r.l, r.x, r.y, r.z, r.intensity))
        end
    """)
    assert r.returncode == 0, r.stderr
    truth = np.loadtxt(r.stdout.splitlines(), ndmin=2)
    with h5py.File(stack) as f:
        frames = f["entry/instrument/detector/data"][()]
        mask = f["entry/instrument/detector/pixel_mask"][()]
    assert frames.shape == (FRAMES, ROWS, COLS)
    return {"stack": stack, "truth": truth, "frames": frames, "mask": mask, "tmp": tmp}


def transform_lua(stack, geometry, grid, out, extra=""):
    return f"""
        local f <close> = nx.load({json.dumps(str(stack))})
        local g = crystal.geometry{lua_table(geometry)}
        local r = crystal.transform(f.entry.instrument.detector.data, {{geometry = g, output = {json.dumps(str(out))},
            grid = {{origin = {lua_table(grid['origin'])}, step = {lua_table(grid['step'])}, size = {lua_table(grid['size'])}}} {extra}}})
        print(r.frames, r.pixels, r.masked, r.outside)
    """


GRID = {"origin": [-4, -4, -3], "step": [0.05, 0.05, 0.1], "size": [161, 161, 61]}


def read_transform(path):
    with h5py.File(path) as f:
        t = f["entry/transform"]
        return t["data"][()], t["weights"][()]


def test_transform_equals_numpy_forward_splat(scan):
    out = scan["tmp"] / "plain.nxs"
    r = run(transform_lua(scan["stack"], GEOMETRY, GRID, out))
    assert r.returncode == 0, r.stderr
    frames, pixels, masked, outside = (int(x) for x in r.stdout.split())
    v, n = read_transform(out)
    vr, nr = numpy_splat(scan["frames"], GEOMETRY, GRID, mask2d=scan["mask"])
    assert v.shape == (61, 161, 161)
    assert frames == FRAMES and pixels == int(nr.sum()) and pixels + masked + outside == FRAMES * ROWS * COLS
    assert np.array_equal(n, nr)
    assert np.allclose(v, vr, rtol=1e-12, atol=0)
    assert v.sum() > 0


def test_transform_weights_masks_and_moving_sample_equal_numpy(scan):
    """Tilts, a sample offset (the lab vectors move with phi), per-frame weights (one frame
    left out), a monitor, transmission, polarization and a 3-D mask volume."""
    p = dict(GEOMETRY, yaw=0.4, pitch=-0.3, roll=0.2, theta=0.5, sample_offset=[0.05, -0.03, 0.02])
    rng = np.random.default_rng(4)
    weights = rng.uniform(0.5, 2, FRAMES)
    weights[5] = 0
    monitor = rng.uniform(9e4, 1.1e5, FRAMES)
    mask3d = (rng.random(scan["frames"].shape) < 0.05).astype(np.uint8)
    mpath = scan["tmp"] / "mask3d.nxs"
    with h5py.File(mpath, "w") as f:
        f["mask"] = mask3d
    out = scan["tmp"] / "weighted.nxs"
    extra = f""", weights = {lua_table(list(weights))}, monitor = {lua_table(list(monitor))}, transmission = 0.8,
        polarization = 0.99, mask3d = nx.load({json.dumps(str(mpath))}).mask"""
    r = run(transform_lua(scan["stack"], p, GRID, out, extra))
    assert r.returncode == 0, r.stderr
    v, n = read_transform(out)
    vr, nr = numpy_splat(scan["frames"], p, GRID, mask2d=scan["mask"], mask3d=mask3d, weights=weights, monitor=monitor,
                         transmission=0.8, polarization=0.99)
    assert np.allclose(n, nr, rtol=1e-12, atol=0)
    assert np.allclose(v, vr, rtol=1e-12, atol=0)
    assert n.sum() > 0


def test_bragg_peaks_land_on_integer_hkl_with_their_intensity(scan):
    out = scan["tmp"] / "peaks.nxs"
    r = run(transform_lua(scan["stack"], GEOMETRY, GRID, out))
    assert r.returncode == 0, r.stderr
    v, n = read_transform(out)
    o, s = np.array(GRID["origin"]), np.array(GRID["step"])
    checked = 0
    for h, k, l, x, y, z, intensity in scan["truth"]:
        # whole spots only: well inside the frames and the module
        if not (4 <= z <= FRAMES - 5 and 8 <= x <= COLS - 9 and 8 <= y <= ROWS - 9):
            continue
        centre = np.round((np.array([h, k, l]) - o) / s).astype(int)
        half = np.round(np.array([0.3, 0.3, 0.3]) / s).astype(int)
        lo, hi = centre - half, centre + half + 1
        if np.any(lo < 0) or np.any(hi > np.array(GRID["size"])):
            continue
        box = v[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
        peak = np.unravel_index(np.argmax(box), box.shape)
        at = np.array([peak[2], peak[1], peak[0]]) + lo
        assert np.all(np.abs(o + at * s - [h, k, l]) <= s + 1e-9), (h, k, l, o + at * s)
        # counts of the spot: Poisson noise on ~1e5, no background
        assert abs(box.sum() - intensity) <= 0.03 * intensity + 4 * math.sqrt(intensity), (h, k, l, box.sum(), intensity)
        checked += 1
    assert checked >= 3


def test_output_is_nxrefines_layout_and_nexusformat_reads_it(scan):
    out = scan["tmp"] / "layout.nxs"
    r = run(transform_lua(scan["stack"], GEOMETRY, GRID, out))
    assert r.returncode == 0, r.stderr
    from nexusformat.nexus import nxload
    root = nxload(str(out))
    t = root["entry/transform"]
    assert t.nxclass == "NXdata"
    assert t.nxsignal.nxname == "data"
    assert [a.nxname for a in t.nxaxes] == ["Ql", "Qk", "Qh"]
    assert t.nxsignal.shape == (61, 161, 161)
    assert t.nxweights.nxname == "weights"
    assert np.isclose(t["Qh"].nxvalue[0], -4) and np.isclose(t["Qh"].nxvalue[-1], 4)
    assert np.isclose(t["Ql"].nxvalue[-1], 3)
    # a* of the hexagonal cell, with 2 pi: 2 pi / (a sin 120)
    assert np.isclose(t["Qh"].attrs["scaling_factor"], 2 * math.pi / (7.1 * math.sin(120 * RAD)))
    assert np.isclose(t["Ql"].attrs["scaling_factor"], 2 * math.pi / 9.6)
    assert np.allclose(t.attrs["angles"], [60, 90, 90])
    assert root["entry"].attrs["default"] == "transform"
    with h5py.File(out) as f:
        assert np.array_equal(f["entry/data/v"][()], f["entry/transform/data"][()])
        assert np.array_equal(f["entry/data/n"][()], f["entry/transform/weights"][()])


def test_default_grid_is_nxrefines(scan):
    r = run(f"""
        local g = crystal.geometry{lua_table(GEOMETRY)}
        local grid = crystal.grid(g, {ROWS}, {COLS})
        print(table.concat(grid.origin, " "), table.concat(grid.step, " "), table.concat(grid.size, " "))
    """)
    assert r.returncode == 0, r.stderr
    vals = [float(x) for x in r.stdout.split()]
    origin, step, size = vals[0:3], vals[3:6], vals[6:9]
    # NXRefine's initialize_grid, with Qmax the largest |Q| on the detector's edge
    lab = []
    for x in range(COLS):
        lab += [(x, 0), (x, ROWS - 1)]
    for y in range(ROWS):
        lab += [(0, y), (COLS - 1, y)]
    xy = np.array(lab, float).T
    p = GEOMETRY
    vec = np.stack([np.full(xy.shape[1], p["distance"]), -(xy[0] - p["beam_center_x"]) * p["pixel_size"],
                    (xy[1] - p["beam_center_y"]) * p["pixel_size"]])
    unit = vec / np.linalg.norm(vec, axis=0)
    qmax = 2 * math.pi * np.max(np.linalg.norm(unit - np.array([[1], [0], [0]]), axis=0)) / p["wavelength"]
    B = np.linalg.inv(bimat(*p["unit_cell"]))
    for i in range(3):
        star = 2 * math.pi * np.linalg.norm(B[:, i])
        stop = math.ceil(np.round(0.8 * qmax / star) / 2) * 2
        rng = 2 * stop / 1000
        m = 10 ** math.floor(math.log10(rng))
        want = min([1, 2, 5, 10], key=lambda c: abs(c - rng / m)) * m
        assert origin[i] == -stop and math.isclose(step[i], want)
        assert size[i] == round(2 * stop / want) + 1


def test_bad_input_names_file_path_and_what_was_expected(scan):
    stack = json.dumps(str(scan["stack"]))
    g = lua_table(GEOMETRY)
    cases = [
        (f"crystal.transform(f.entry.instrument.detector.pixel_mask, {{geometry = crystal.geometry{g}}})",
         ["scan.nxs", "/entry/instrument/detector/pixel_mask", "frames (frames, rows, columns) are needed"]),
        (f"crystal.transform(f.entry.instrument.detector.data, {{geometry = crystal.geometry{g}, mask = {{{{0, 1}}}}}})",
         ["scan.nxs", "/entry/instrument/detector/data", "pixel mask has shape (1, 2), the frames (195, 487)"]),
        ("crystal.transform(f.entry.instrument.detector.data, {geometry = crystal.geometry{distance = 100}})",
         ["unit cell and an orientation matrix"]),
        (f"crystal.transform(f.entry.instrument.detector.data, {{geometry = crystal.geometry{g}, grid = {{origin = {{0, 0, 0}}, step = {{0.1, 0, 0.1}}, size = {{2, 2, 2}}}}}})",
         ["grid axis k", "step positive"]),
        (f"crystal.transform(f.entry.instrument.detector.data, {{geometry = crystal.geometry{g}, mask3d = f.entry.instrument.detector.pixel_mask}})",
         ["scan.nxs", "/entry/instrument/detector/pixel_mask", "3-D mask must have the frames' shape (24, 195, 487)"]),
        (f"crystal.transform(f.entry.instrument.detector.data, {{geometry = crystal.geometry{g}, weights = {{1, 2}}}})",
         ["scan.nxs", "/entry/instrument/detector/data", "24 frames but 2 frame weights"]),
    ]
    for code, parts in cases:
        r = run(f"local f <close> = nx.load({stack}); {code}")
        assert r.returncode != 0, code
        for part in parts:
            assert part in r.stderr, (code, r.stderr)


def test_merge_of_two_halves_equals_the_whole_scan(scan):
    halves = []
    for i, (a, b) in enumerate([(0, 12), (12, FRAMES)]):
        out = scan["tmp"] / f"half{i}.nxs"
        r = run(transform_lua(scan["stack"], GEOMETRY, GRID, out, f", frames = {{{a}, {b}}}"))
        assert r.returncode == 0, r.stderr
        assert r.stdout.split()[0] == str(b - a)
        halves.append(out)
    whole = scan["tmp"] / "whole.nxs"
    r = run(transform_lua(scan["stack"], GEOMETRY, GRID, whole))
    assert r.returncode == 0, r.stderr
    merged = scan["tmp"] / "merged.nxs"
    r = run(f"""local t = nx.load({json.dumps(str(halves[1]))})
        print(table.concat(crystal.merge({{{json.dumps(str(halves[0]))}, t.entry.transform}}, {json.dumps(str(merged))}), " "))""")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["61", "161", "161"]
    v, n = read_transform(merged)
    vw, nw = read_transform(whole)
    assert np.array_equal(n, nw) and np.array_equal(v, vw)
    from nexusformat.nexus import nxload
    t = nxload(str(merged))["entry/transform"]
    assert [a.nxname for a in t.nxaxes] == ["Ql", "Qk", "Qh"] and np.allclose(t.attrs["angles"], [60, 90, 90])
    # a grid that differs is refused, naming both
    other = scan["tmp"] / "other.nxs"
    g2 = dict(GRID, step=[0.05, 0.05, 0.2], size=[161, 161, 31])
    r = run(transform_lua(scan["stack"], GEOMETRY, g2, other, ", frames = {0, 2}"))
    assert r.returncode == 0, r.stderr
    r = run(f"crystal.merge({{{json.dumps(str(whole))}, {json.dumps(str(other))}}}, {json.dumps(str(scan['tmp'] / 'bad.nxs'))})")
    assert r.returncode != 0 and "other.nxs" in r.stderr and "whole.nxs" in r.stderr and "differs" in r.stderr, r.stderr


# --- memory bound (out of core), resuming, Ctrl-C, oversampling ---------------------------

BIG = {"origin": [-4, -4, -3], "step": [0.02, 0.02, 0.1], "size": [401, 401, 61]}   # 9.8 M voxels: v and n 157 MB


def test_grid_larger_than_the_memory_limit_equals_in_memory(scan):
    """A 157 MB grid under a 128 MB limit: one pass over the frames, bricks of 32^3 voxels
    held as they fit, the others pushed out to the output: v and n equal the in-memory
    transform's, bit for bit (itself equal to numpy's above), and the peak resident memory
    stays under the limit."""
    import os
    whole, ooc = scan["tmp"] / "inmem.nxs", scan["tmp"] / "ooc.nxs"
    r = run(transform_lua(scan["stack"], GEOMETRY, BIG, whole) +
            "print(r.bricks, r.bricks_held, r.evictions, r.v.shape[1], getmetatable(r.v).__name, getmetatable(r.n).__name)")
    assert r.returncode == 0, r.stderr
    # with an output, v and n are its fields whether the grid fitted in memory or not
    assert r.stdout.split()[-6:] == ["338", "338", "0", "61", "NXfield", "NXfield"]
    in_memory_counts = r.stdout.splitlines()[0].split()
    code = transform_lua(scan["stack"], GEOMETRY, BIG, ooc, ', memory = "128MB"') + \
        "print(r.bricks, r.bricks_held, r.evictions, r.v.shape[1], string.format('%.17g', r.v['30']:sum()), getmetatable(r.v).__name)"
    # /usr/bin/time forks from a small process: Python's fork would count pytest's memory
    p = subprocess.run(["/usr/bin/time", "-f", "peak %M", BIN, "-e", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    out, peak_kb = p.stdout, int(p.stderr.strip().splitlines()[-1].split()[-1])
    counts, info = out.splitlines()[0].split(), out.splitlines()[1].split()
    bricks, held, evictions = int(info[0]), int(info[1]), int(info[2])
    assert bricks == 338 and 4 <= held < bricks and evictions > 0 and info[3] == "61" and info[5] == "NXfield"
    if not os.environ.get("NXLUA_SANITIZED"):  # AddressSanitizer's shadow memory is not the program's
        assert peak_kb / 1024 <= 128, peak_kb
    v, n = read_transform(ooc)
    vm, nm = read_transform(whole)
    assert np.array_equal(n, nm) and np.array_equal(v, vm)
    assert float(info[4]) == pytest.approx(vm[30].sum(), rel=1e-12) and vm[30].sum() > 0  # r.v: the output's field, read where indexed
    assert counts == in_memory_counts and int(counts[1]) == int(nm.sum())
    assert int(counts[1]) + int(counts[2]) + int(counts[3]) == FRAMES * ROWS * COLS
    # without an output, v and n are ndarrays (no bricks), and a grid above the limit is refused, saying why
    r = run(transform_lua(scan["stack"], GEOMETRY, GRID, ooc).replace(f"output = {json.dumps(str(ooc))},", "") +
            "print(r.bricks, getmetatable(r.v).__name, getmetatable(r.n).__name, r.v.shape[1])")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-4:] == ["0", "ndarray", "ndarray", "61"]
    r = run(transform_lua(scan["stack"], GEOMETRY, BIG, ooc, ', memory = "128MB"').replace(f"output = {json.dumps(str(ooc))},", ""))
    assert r.returncode != 0 and "does not fit in the memory limit" in r.stderr and "scan.nxs" in r.stderr, r.stderr
    r = run(transform_lua(scan["stack"], GEOMETRY, BIG, ooc, ', memory = "10MB"'))
    assert r.returncode != 0 and "memory limit 10 MB is too small" in r.stderr and "/entry/instrument/detector/data" in r.stderr, r.stderr


TIGHT = ', memory = "104MB", checkpoint = 0'   # GRID's 72 bricks, 6 held at once; checkpoints after every frame


def test_killed_transform_resumes_without_double_counting(scan):
    """kill -9 at random moments (checkpoints after every frame, slab by slab), rerun:
    v and n equal an uninterrupted run's."""
    import random
    import time
    ref = scan["tmp"] / "ref_resume.nxs"
    extra = TIGHT
    started = time.monotonic()
    r = run(transform_lua(scan["stack"], GEOMETRY, GRID, ref, extra) + "print(r.bricks, r.bricks_held, r.evictions)")
    took = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    bricks, held, evictions = (int(x) for x in r.stdout.split()[-3:])
    assert bricks == 72 and held < 10 and evictions > 0
    counts = r.stdout.split()[:4]
    vm, nm = read_transform(ref)
    out = scan["tmp"] / "killed.nxs"
    rnd = random.Random(7)
    code = transform_lua(scan["stack"], GEOMETRY, GRID, out, extra) + "print(r.resumed or -1)"
    kills = 0
    states = []
    scale = 1.0
    for attempt in range(12):
        p = subprocess.Popen([BIN, "-e", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(rnd.uniform(0.2, 0.7) * took * scale)  # each run resumes, so it has less to do
        if p.poll() is None:
            p.kill()
            kills += 1
        p.communicate()
        if p.returncode == 0:  # finished first (a noisy machine): start again, kill sooner
            out.unlink()
            scale /= 2
            continue
        try:
            with h5py.File(out) as f:
                state = f["entry/transform_progress/state"][()]
        except (OSError, KeyError):  # killed before the output was made
            state = None
        if state is None or state[1] <= 0:  # before the first checkpoint: kill later
            scale *= 1.5
            continue
        states.append(state)
        if len(states) >= 3:
            break
    r = run(code)
    assert r.returncode == 0, r.stderr
    assert kills >= 1 and states, states  # killed after a checkpoint at least once
    v, n = read_transform(out)
    assert np.array_equal(n, nm) and np.array_equal(v, vm)
    assert r.stdout.split()[:4] == counts
    assert not (scan["tmp"] / "killed.nxs.partial").exists()


def test_empty_output_name_is_refused_with_the_option_named(scan):
    code = transform_lua(scan["stack"], GEOMETRY, GRID, "")
    r = run(code)
    assert r.returncode != 0
    assert "output must name the NeXus file" in r.stderr, r.stderr
    r = run(f"""
        local f <close> = nx.load({json.dumps(str(scan["stack"]))})
        print(pcall(crystal.transformer, crystal.geometry{lua_table(GEOMETRY)}, 195, 487, {{output = "",
            grid = {{origin = {lua_table(GRID['origin'])}, step = {lua_table(GRID['step'])}, size = {lua_table(GRID['size'])}}}}}))
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("false") and "output must name the NeXus file" in r.stdout, r.stdout


def test_interrupted_transform_refuses_other_options_and_resumes(scan):
    """SIGINT (Ctrl-C) stops it with a checkpoint: the error says how to resume; a rerun
    with another grid is refused, naming the file and what differs; the same one finishes."""
    import signal
    import time
    out = scan["tmp"] / "sigint.nxs"
    extra = TIGHT
    code = transform_lua(scan["stack"], GEOMETRY, GRID, out, extra)
    started = time.monotonic()
    assert run(code.replace("sigint.nxs", "sigint_timed.nxs")).returncode == 0
    took = time.monotonic() - started
    for delay in (0.6, 0.4, 0.2, 0.1):
        p = subprocess.Popen([BIN, "-e", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay * took)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate()
        if p.returncode != 0:
            break
    else:
        pytest.skip("the transform finished before each Ctrl-C")
    assert "interrupted" in err and "sigint.nxs" in err and "to resume" in err, err
    with h5py.File(out) as f:
        state = f["entry/transform_progress/state"][()]
    assert state[1] >= 0
    other = dict(GRID, step=[0.05, 0.05, 0.05], size=[161, 161, 121])
    r = run(transform_lua(scan["stack"], GEOMETRY, other, out, extra))
    assert r.returncode != 0 and "sigint.nxs" in r.stderr and "transform_progress" in r.stderr and "grid:" in r.stderr, r.stderr
    r = run(transform_lua(scan["stack"], GEOMETRY, GRID, out, extra))
    assert r.returncode == 0, r.stderr
    v, n = read_transform(out)
    vr, nr = numpy_splat(scan["frames"], GEOMETRY, GRID, mask2d=scan["mask"])
    assert np.array_equal(n, nr) and np.allclose(v, vr, rtol=1e-12, atol=0)


def test_oversampled_pixels_equal_numpy(scan):
    out = scan["tmp"] / "over.nxs"
    r = run(transform_lua(scan["stack"], GEOMETRY, GRID, out, ", oversample = 2, polarization = 0.95"))
    assert r.returncode == 0, r.stderr
    frames, pixels, masked, outside = (int(x) for x in r.stdout.split())
    assert pixels + masked + outside == FRAMES * ROWS * COLS * 4
    v, n = read_transform(out)
    vr, nr = numpy_splat(scan["frames"], GEOMETRY, GRID, mask2d=scan["mask"], polarization=0.95, oversample=2)
    assert np.allclose(n, nr, rtol=1e-12, atol=1e-12)
    assert np.allclose(v, vr, rtol=1e-11, atol=1e-9)
    assert abs(n.sum() * 4 - pixels) < 1e-6 * pixels
    # finer than the pixel: the weight spreads over more voxels than without
    vp, np_ = read_transform(scan["tmp"] / "plain.nxs") if (scan["tmp"] / "plain.nxs").exists() else (None, None)
    if np_ is not None:
        assert np.count_nonzero(n) > np.count_nonzero(np_)


def test_transformer_fed_block_by_block_equals_the_transform(scan):
    """crystal.transformer (what a macro feeds on each frames.ready): blocks out of order,
    the same v and n as crystal.transform and numpy; written in the same layout."""
    out = scan["tmp"] / "fed.nxs"
    grid = f"{{origin = {lua_table(GRID['origin'])}, step = {lua_table(GRID['step'])}, size = {lua_table(GRID['size'])}}}"
    r = run(f"""
        local f <close> = nx.load({json.dumps(str(scan["stack"]))})
        local d = f.entry.instrument.detector
        local t = crystal.transformer(crystal.geometry{lua_table(GEOMETRY)}, {ROWS}, {COLS}, {{grid = {grid}, mask = d.pixel_mask:read()}})
        for _, first in ipairs({{16, 0, 8}}) do t:add(d.data[string.format("%d:%d", first, first + 8)], first) end
        local o <close> = nx.load({json.dumps(str(out))}, "w")
        t:write(o)
        print(t.frames, t.pixels, t.masked, t.outside, t.v.shape[1])
        print(pcall(t.add, t, array.zeros({{3, 4}}), 0))
    """)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    frames, pixels, masked, outside, planes = (int(x) for x in lines[0].split())
    vr, nr = numpy_splat(scan["frames"], GEOMETRY, GRID, mask2d=scan["mask"])
    assert frames == FRAMES and planes == 61 and pixels == int(nr.sum()) and pixels + masked + outside == FRAMES * ROWS * COLS
    v, n = read_transform(out)
    assert np.array_equal(n, nr) and np.allclose(v, vr, rtol=1e-12, atol=0)
    assert lines[1].startswith("false") and "(3, 4) cannot be transformed with (195, 487) frames" in lines[1], lines[1]


LIVE_MACRO = """
local g = crystal.geometry{geometry}
local live = {{}}

on("frames.ready", "transform", function(e)
  local frames = macro.frames(e)
  local t = live[e.run]
  if t == nil then
    t = crystal.transformer(g, frames.shape[2], frames.shape[3], {{grid = {grid} {options}}})
    live[e.run] = t
  end
  t:add(frames, e.first)
  local f = assert(io.open({log}, "a"))
  f:write(e.first, " ", frames.shape[1], " ", t.frames, " ", t.skipped, "\\n")
  f:close()
  {after_add}
end)

on("run.stop", "transform", function(e)
  local t = assert(live[e.run], "no frames before run.stop")
  live[e.run] = nil
  {stop}
end)
"""

IN_MEMORY_STOP = """local out <close> = nx.load({out}, "w")
  t:write(out)"""


@pytest.mark.parametrize("out_of_core", [False, True], ids=["in_memory", "out_of_core_killed"])
def test_transformer_in_a_macro_follows_a_live_stack(tmp_path, out_of_core):
    """`nxlua macros` with crystal.transformer on frames.ready while `nxlua stack` writes a
    stack: block by block as the stacker announces them, the grid written on run.stop
    equals the offline crystal.transform of the finished stack. Out of core (output, a
    memory limit forcing bricks out), the runner is killed with SIGKILL in a handler after
    its t:add and restarted: the block delivered again is skipped, nothing counted twice."""
    from test_macros import Runner, feed, stack_live, wait_caught_up
    journal = str(tmp_path / "j.sqlite")
    n = 12
    p, made, watched, stack = stack_live(tmp_path, journal, n)
    folder = tmp_path / "macros"
    folder.mkdir()
    live, log, pause = tmp_path / "live_transform.nxs", tmp_path / "blocks.log", tmp_path / "paused"
    grid = f"{{origin = {lua_table(GRID['origin'])}, step = {lua_table(GRID['step'])}, size = {lua_table(GRID['size'])}}}"
    out = json.dumps(str(live))
    if out_of_core:
        # the first process waits in its first handler, after t:add (so after its checkpoint), to be killed there
        options, stop = f', output = {out}, memory = "104MB"', "local r = t:finish(); assert(r.frames == 12 and r.evictions > 0, r.frames)"
        after_add = f"""if not io.open({json.dumps(str(pause))}) then assert(io.open({json.dumps(str(pause))}, "w")):close(); nxlua.sleep(60) end"""
    else:
        options, stop, after_add = "", IN_MEMORY_STOP.format(out=out), ""
    (folder / "transform_live.lua").write_text(LIVE_MACRO.format(geometry=lua_table(GEOMETRY), grid=grid, log=json.dumps(str(log)),
                                                                  options=options, stop=stop, after_add=after_add))
    runner = Runner(folder, journal)
    try:
        feed(p, made, watched)
        if out_of_core:
            deadline = time.time() + 60
            while not pause.exists() and time.time() < deadline and runner.p.poll() is None:
                time.sleep(0.02)
            assert pause.exists(), runner.text()
            runner.kill()
            runner.start()
        wait_caught_up(journal, ["transform_live"], runner)
    finally:
        text = runner.stop()
    assert "error" not in text.lower(), text
    blocks = [tuple(int(x) for x in line.split()) for line in log.read_text().splitlines()]
    covered = sorted(i for first, count, _, _ in blocks for i in range(first, first + count))
    if out_of_core:
        # the block handled when killed came again after the restart and was skipped whole
        again = blocks[0]
        assert sum(1 for b in blocks if b[:2] == again[:2]) == 2, blocks
        redelivered = next(b for b in blocks[1:] if b[:2] == again[:2])
        assert redelivered[3] == again[1] and redelivered[2] == again[2], blocks  # skipped, counts unchanged
        covered = sorted(set(covered))
        assert not (tmp_path / "live_transform.nxs.partial").exists()
    # block by block as announced (not always in frame order), each frame once
    assert len(blocks) > 1 and covered == list(range(n)) and blocks[-1][2] == n, blocks
    offline = tmp_path / "offline.nxs"
    r = run(transform_lua(stack, GEOMETRY, GRID, offline, ", mask = false"))
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[0]) == n
    v, w = read_transform(live)
    vo, wo = read_transform(offline)
    assert w.sum() > 0 and np.array_equal(w, wo) and np.array_equal(v, vo)


# --- the transformer out of core: bricks, checkpoints after every block, resuming --------

def transformer_lua(stack, out, grid, firsts, count, extra="", after_add=""):
    """A transformer with output fed blocks of `count` frames at `firsts` (in that order)."""
    g = f"{{origin = {lua_table(grid['origin'])}, step = {lua_table(grid['step'])}, size = {lua_table(grid['size'])}}}"
    return f"""
        local f <close> = nx.load({json.dumps(str(stack))})
        local d = f.entry.instrument.detector
        local t = crystal.transformer(crystal.geometry{lua_table(GEOMETRY)}, {ROWS}, {COLS},
            {{grid = {g}, mask = d.pixel_mask:read(), output = {json.dumps(str(out))} {extra}}})
        for _, first in ipairs({{{", ".join(str(i) for i in firsts)}}}) do
          t:add(d.data[string.format("%d:%d", first, first + {count})], first)
          {after_add}
        end
    """


def added_frames(path):
    """The frames entry/transform_progress marks as in (the current row of frames_added)."""
    with h5py.File(path) as f:
        p = f["entry/transform_progress"]
        state, rows = p["state"][()], p["frames_added"][()]
    bits = np.unpackbits(rows[int(state[7])], bitorder="little")
    return state, set(np.flatnonzero(bits).tolist())


def test_transformer_out_of_core_equals_the_transform_under_the_limit(scan):
    """The transformer fed block by block (out of order, one block twice) into a 157 MB grid
    under a 128 MB limit: bricks pushed out to the output, a checkpoint after every block,
    the frames given twice skipped; v and n equal crystal.transform's of the same frames,
    bit for bit, and the peak resident memory stays under the limit."""
    import os
    ref, out = scan["tmp"] / "tr_ref.nxs", scan["tmp"] / "tr_ooc.nxs"
    r = run(transform_lua(scan["stack"], GEOMETRY, BIG, ref))
    assert r.returncode == 0, r.stderr
    code = transformer_lua(scan["stack"], out, BIG, [16, 0, 8], 8, ', memory = "128MB"') + f"""
        t:add(d.data["8:12"], 8)      -- given again: skipped
        print(t.frames, t.skipped, t.next, pcall(function() return t.v end))
        local r = t:finish()
        print(r.frames, r.pixels, r.masked, r.outside)
        print(r.bricks, r.bricks_held, r.evictions, r.checkpoints, r.skipped, getmetatable(r.v).__name, getmetatable(r.n).__name)
        print(pcall(t.add, t, d.data["0:1"], 0))
    """
    p = subprocess.run(["/usr/bin/time", "-f", "peak %M", BIN, "-e", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    peak_kb = int(p.stderr.strip().splitlines()[-1].split()[-1])
    lines = p.stdout.splitlines()
    first = lines[0].split("\t")
    assert first[:4] == [str(FRAMES), "4", str(FRAMES), "false"] and "tr_ooc.nxs" in first[4] and "t:finish()" in first[4], lines[0]
    assert lines[1].split() == r.stdout.split()  # frames, pixels, masked, outside as crystal.transform's
    bricks, held, evictions, checkpoints, skipped = (int(x) for x in lines[2].split()[:5])
    assert bricks == 338 and 4 <= held < bricks and evictions > 0 and checkpoints >= 4 and skipped == 4, lines[2]
    assert lines[2].split()[5:] == ["NXfield", "NXfield"]
    assert lines[3].startswith("false") and "finished" in lines[3], lines[3]
    if not os.environ.get("NXLUA_SANITIZED"):  # AddressSanitizer's shadow memory is not the program's
        assert peak_kb / 1024 <= 128, peak_kb
    v, n = read_transform(out)
    vr, nr = read_transform(ref)
    assert n.sum() > 0 and np.array_equal(n, nr) and np.array_equal(v, vr)
    assert not (scan["tmp"] / "tr_ooc.nxs.partial").exists()
    state, frames = added_frames(out)
    assert state[0] == 2 and frames == set(range(FRAMES))  # finished, every frame in
    # without an output the grid is held whole: refused above the limit, saying why
    r = run(transformer_lua(scan["stack"], out, BIG, [0], 8, ', memory = "128MB"').replace(f"output = {json.dumps(str(out))}", "output = nil"))
    assert r.returncode != 0 and "crystal.transformer" in r.stderr and "does not fit in the memory limit 128 MB" in r.stderr, r.stderr


def test_transformer_killed_mid_scan_and_fed_again_resumes_without_double_counting(scan):
    """A transformer with output (6 bricks of 72 held) killed with SIGKILL mid-scan, then
    fed again from the start by a new process, as a restarted macro runner re-delivers the
    frames: it skips the frames the output says are in and ends equal to an uninterrupted run."""
    import signal
    firsts = [12, 0, 16, 4, 20, 8]  # blocks of 4 frames, out of order as a stacker may announce them
    ref, out = scan["tmp"] / "tr_whole.nxs", scan["tmp"] / "tr_killed.nxs"
    extra = ', memory = "104MB"'
    finish = "local r = t:finish(); print('done', r.frames, r.pixels, r.masked, r.outside, r.skipped, r.resumed or -1, r.evictions)"
    r = run(transformer_lua(scan["stack"], ref, GRID, firsts, 4, extra) + finish)
    assert r.returncode == 0, r.stderr
    whole = r.stdout.split()
    assert whole[1] == str(FRAMES) and int(whole[7]) > 0, whole  # bricks were pushed out
    code = transformer_lua(scan["stack"], out, GRID, firsts, 4, extra,
                           after_add="io.stdout:write('added ', first, ' ', t.skipped, '\\n'); io.stdout:flush()") + finish
    fed = []
    for kill_after in (2, 4):  # the second process resumes, then is killed too
        p = subprocess.Popen([BIN, "-e", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            done = []
            while len(done) < kill_after:
                line = p.stdout.readline()
                assert line.startswith("added"), (line, p.stderr.read() if p.poll() is not None else "")
                done.append(int(line.split()[1]))
            p.send_signal(signal.SIGKILL)  # mid-scan: the next block may be half added
        finally:
            p.kill()
            p.communicate()
        assert p.returncode == -signal.SIGKILL
        # each block whose add returned is in the output (a checkpoint ends every add), nothing twice
        state, frames = added_frames(out)
        returned = {z for first in done for z in range(first, first + 4)}
        assert returned <= frames and frames <= set(range(FRAMES)) and state[0] in (0, 1), (sorted(frames), done)
        assert len(frames) % 4 == 0 and state[3] == len(frames), state  # whole blocks, counted once
        fed.append(frames)
    assert fed[0] < fed[1]
    r = run(code)
    assert r.returncode == 0, r.stderr
    last = r.stdout.splitlines()[-1].split()
    assert last[:5] == whole[:5], (last, whole)  # frames, pixels, masked, outside over all the runs
    # skipped: the frames already in; resumed: the first frame not in
    assert int(last[5]) == len(fed[1]) and int(last[6]) == min(set(range(FRAMES)) - fed[1]), last
    v, n = read_transform(out)
    vr, nr = read_transform(ref)
    assert n.sum() > 0 and np.array_equal(n, nr) and np.array_equal(v, vr)
    assert not (scan["tmp"] / "tr_killed.nxs.partial").exists()
