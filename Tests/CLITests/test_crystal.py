"""crystal: geometry against an independent numpy implementation of NXRefine's equations
(nxrefine.py: Bimat, Omat, Dmat, Gmat, Gvec, calculate_angles), reading and writing
NXRefine's layout, the simulator through `nxlua stack`, frame statistics and peak search
against the simulator's truth."""
import json
import math
import pathlib
import subprocess

import h5py
import hdf5plugin  # noqa: F401  (registers bitshuffle and LZ4 for h5py: the stack is bslz4)
import numpy as np
import pytest

from conftest import BIN

RAD = math.pi / 180


# --- NXRefine's equations, written out with numpy --------------------------------------

def rotmat(axis, angle):
    c, s = math.cos(angle * RAD), math.sin(angle * RAD)
    if axis == 1:
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == 2:
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def omat(text):
    m = np.zeros((3, 3))
    i, d = 0, 1
    for ch in text.replace(" ", ""):
        if ch == "+":
            d = 1
        elif ch == "-":
            d = -1
        else:
            m[i, "xyz".index(ch)] = d
            d = 1
            i += 1
    return m


def bimat(a, b, c, alpha, beta, gamma):
    al, be, ga = alpha * RAD, beta * RAD, gamma * RAD
    b23 = c * (math.cos(al) - math.cos(be) * math.cos(ga)) / math.sin(ga)
    b33 = math.sqrt(c ** 2 - (c * math.cos(be)) ** 2 - b23 ** 2)
    return np.array([[a, b * math.cos(ga), c * math.cos(be)], [0, b * math.sin(ga), b23], [0, 0, b33]])


class NumpyGeometry:
    def __init__(self, p):
        self.p = p
        self.O = omat(p["orientation"])
        self.D = np.linalg.inv(rotmat(1, p["roll"]) @ rotmat(2, p["pitch"]) @ rotmat(3, p["yaw"]))
        self.G0 = rotmat(2, p["theta"]) @ rotmat(3, p["omega"]) @ rotmat(1, p["chi"])
        self.B = np.linalg.inv(bimat(*p["cell"]))
        self.U = np.array(p["U"])

    def G(self, phi):
        return self.G0 @ rotmat(3, phi)

    def lab(self, x, y, z):
        p = self.p
        phi = p["phi"] + p["phi_step"] * z
        v2 = p["pixel_size"] * np.linalg.inv(self.O) @ np.array([x - p["xc"], y - p["yc"], 0.0])
        dvec = self.G(phi) @ np.array([p["xs"], p["ys"], p["zs"]]) - np.array([p["distance"], 0, 0])
        return np.linalg.inv(self.D) @ v2 - dvec

    def gvec(self, x, y, z):
        p = self.p
        phi = p["phi"] + p["phi_step"] * z
        v3 = self.lab(x, y, z)
        return np.linalg.inv(self.G(phi)) @ (v3 / np.linalg.norm(v3) / p["wavelength"] - np.array([1 / p["wavelength"], 0, 0]))

    def hkl(self, x, y, z):
        return np.linalg.inv(self.U @ self.B) @ self.gvec(x, y, z)

    def angles(self, x, y, z):
        v = self.lab(x, y, z)
        return (math.degrees(math.atan2(math.hypot(v[1], v[2]), v[0])), math.degrees(math.atan2(-v[1], v[2])))

    def nxrefine_calculate_angles(self, x, y):
        """nxrefine.py's calculate_angles (tilts and sample offset ignored there)."""
        p = self.p
        oi = np.linalg.inv(self.O)
        peak = oi @ np.array([x - p["xc"], y - p["yc"], 0.0])
        v = np.linalg.norm(p["pixel_size"] * np.linalg.inv(self.D) @ oi @ peak)
        return math.degrees(math.atan(v / p["distance"])), math.degrees(math.atan2(-peak[1], peak[2]))


def random_rotation(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


ORIENTATIONS = ["-y +z -x", "+y -z -x", "-y -z -x", "+z +y -x", "-z -y -x"]


def random_geometry(rng):
    while True:
        a, b, c = rng.uniform(3, 15, 3)
        al, be, ga = rng.uniform(70, 110, 3)
        try:
            bimat(a, b, c, al, be, ga)
            break
        except ValueError:
            continue
    return {
        "distance": rng.uniform(100, 800), "pixel_size": rng.uniform(0.05, 0.2),
        "xc": rng.uniform(400, 1100), "yc": rng.uniform(400, 1300),
        "yaw": rng.uniform(-3, 3), "pitch": rng.uniform(-3, 3), "roll": rng.uniform(-3, 3),
        "orientation": ORIENTATIONS[rng.integers(len(ORIENTATIONS))],
        "theta": rng.uniform(-5, 5), "omega": rng.uniform(-10, 10), "chi": rng.uniform(-30, 30),
        "phi": rng.uniform(-10, 10), "phi_step": rng.choice([0.1, -0.1, 0.05, 0.2]),
        "wavelength": rng.uniform(0.1, 1.5),
        "xs": rng.uniform(-0.1, 0.1), "ys": rng.uniform(-0.1, 0.1), "zs": rng.uniform(-0.1, 0.1),
        "cell": [a, b, c, al, be, ga], "U": random_rotation(rng).tolist(),
    }


def write_nxrefine_file(path, p, scan="f1"):
    """A file in NXRefine's layout, written with h5py (values in NXRefine's units, no @units)."""
    with h5py.File(path, "w") as f:
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        s = e.create_group("sample")
        s.attrs["NX_class"] = "NXsample"
        s["unit_cell"] = np.array(p["cell"])
        sc = f.create_group(scan)
        sc.attrs["NX_class"] = "NXentry"
        sc["sample"] = s
        d = sc.create_group("instrument/detector")
        d.attrs["NX_class"] = "NXdetector"
        for k, v in [("distance", p["distance"]), ("pixel_size", p["pixel_size"]), ("beam_center_x", p["xc"]),
                     ("beam_center_y", p["yc"]), ("yaw", p["yaw"]), ("pitch", p["pitch"]), ("roll", p["roll"])]:
            d[k] = v
        d["detector_orientation"] = p["orientation"]
        d["orientation_matrix"] = np.array(p["U"])
        g = sc.create_group("instrument/goniometer")
        g.attrs["NX_class"] = "NXgoniometer"
        g["phi"] = p["phi"]
        g["phi"].attrs["step"] = p["phi_step"]
        for k in ["chi", "omega", "theta", "xs", "ys", "zs"]:
            g[k] = p[k]
        m = sc.create_group("instrument/monochromator")
        m["wavelength"] = p["wavelength"]


def run_lua(code, *args, timeout=300):
    r = subprocess.run([BIN, "-e", code, *args], capture_output=True, text=True, timeout=timeout)
    return r


POINTS_LUA = """
local g = crystal.geometry(FILE)
local out = {}
for line in io.lines(PTS) do
  local x, y, z = line:match("(%S+) (%S+) (%S+)")
  x, y, z = tonumber(x), tonumber(y), tonumber(z)
  local h, k, l = g:hkl(x, y, z)
  local qx, qy, qz = g:q(x, y, z)
  local vx, vy, vz = g:lab(x, y, z)
  local p, a = g:angles(x, y, z)
  out[#out + 1] = string.format("%.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g",
    h, k, l, qx, qy, qz, vx, vy, vz, p, a)
end
print(table.concat(out, "\\n"))
"""


def close(a, b, rel=1e-9):
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = max(np.abs(b).max(), 1e-300)
    return np.abs(a - b).max() <= rel * scale


def test_geometry_matches_numpy_nxrefine_on_random_geometries(tmp_path):
    rng = np.random.default_rng(17)
    for trial in range(12):
        p = random_geometry(rng)
        path = tmp_path / f"g{trial}.nxs"
        write_nxrefine_file(path, p)
        pts = np.column_stack([rng.uniform(0, 1475, 40), rng.uniform(0, 1679, 40), rng.uniform(0, 3600, 40)])
        pts_file = tmp_path / f"p{trial}.txt"
        pts_file.write_text("\n".join(f"{float(x)!r} {float(y)!r} {float(z)!r}" for x, y, z in pts))
        r = run_lua(f"FILE = {json.dumps(str(path))}; PTS = {json.dumps(str(pts_file))}" + POINTS_LUA)
        assert r.returncode == 0, r.stderr
        got = np.array([[float(v) for v in line.split()] for line in r.stdout.strip().splitlines()])
        ref = NumpyGeometry(p)
        for row, (x, y, z) in zip(got, pts):
            assert close(row[0:3], ref.hkl(x, y, z)), (trial, row[0:3], ref.hkl(x, y, z))
            assert close(row[3:6], ref.gvec(x, y, z))
            assert close(row[6:9], ref.lab(x, y, z))
            assert close(row[9:11], ref.angles(x, y, z))


def test_untilted_angles_equal_nxrefine_calculate_angles(tmp_path):
    rng = np.random.default_rng(5)
    p = random_geometry(rng)
    p.update(yaw=0.0, pitch=0.0, roll=0.0, xs=0.0, ys=0.0, zs=0.0, orientation="-y +z -x")
    path = tmp_path / "g.nxs"
    write_nxrefine_file(path, p)
    pts = np.column_stack([rng.uniform(0, 1475, 30), rng.uniform(0, 1679, 30), rng.uniform(0, 3600, 30)])
    pts_file = tmp_path / "p.txt"
    pts_file.write_text("\n".join(f"{float(x)!r} {float(y)!r} {float(z)!r}" for x, y, z in pts))
    r = run_lua(f"FILE = {json.dumps(str(path))}; PTS = {json.dumps(str(pts_file))}" + POINTS_LUA)
    assert r.returncode == 0, r.stderr
    got = np.array([[float(v) for v in line.split()] for line in r.stdout.strip().splitlines()])
    ref = NumpyGeometry(p)
    for row, (x, y, z) in zip(got, pts):
        assert close(row[9:11], ref.nxrefine_calculate_angles(x, y))


def test_whole_frames_match_points(tmp_path):
    rng = np.random.default_rng(9)
    p = random_geometry(rng)
    path = tmp_path / "g.nxs"
    write_nxrefine_file(path, p)
    out = tmp_path / "out.nxs"
    code = f"""
    local g = crystal.geometry({json.dumps(str(path))})
    local o <close> = nx.load({json.dumps(str(out))}, "w")
    o.hkl = g:frame("hkl", 123.5, 40, 30)
    o.q = g:frame("q", 123.5, 40, 30)
    o.polar = g:frame("polar", 123.5, 40, 30)
    o.azimuthal = g:frame("azimuthal", 123.5, 40, 30)
    o.qmag = g:frame("qmag", 123.5, 40, 30)
    o.lab = g:frame("lab", 123.5, 40, 30)
    """
    r = run_lua(code)
    assert r.returncode == 0, r.stderr
    ref = NumpyGeometry(p)
    with h5py.File(out) as f:
        hkl, q, polar, az, qmag, lab = (f[k][()] for k in ["hkl", "q", "polar", "azimuthal", "qmag", "lab"])
    assert hkl.shape == (40, 30, 3) and polar.shape == (40, 30)
    for y in range(0, 40, 7):
        for x in range(0, 30, 5):
            assert close(hkl[y, x], ref.hkl(x, y, 123.5))
            assert close(q[y, x], ref.gvec(x, y, 123.5))
            assert close(lab[y, x], ref.lab(x, y, 123.5))
            assert close([polar[y, x], az[y, x]], ref.angles(x, y, 123.5))
            assert close(qmag[y, x], 2 * math.pi * np.linalg.norm(ref.gvec(x, y, 123.5)))


def test_geometry_written_in_nxrefine_layout_reads_back(tmp_path):
    rng = np.random.default_rng(11)
    p = random_geometry(rng)
    src = tmp_path / "src.nxs"
    write_nxrefine_file(src, p)
    dst = tmp_path / "dst.nxs"
    code = f"""
    local g = crystal.geometry({json.dumps(str(src))})
    local o <close> = nx.load({json.dumps(str(dst))}, "w")
    o.entry = nx.group("NXentry")
    g:write(o, "f1")
    local g2 = crystal.geometry({json.dumps(str(dst))}, "f1")
    local a = {{g:hkl(100, 200, 300)}}
    local b = {{g2:hkl(100, 200, 300)}}
    print(string.format("%.17g %.17g %.17g %.17g %.17g %.17g", a[1], a[2], a[3], b[1], b[2], b[3]))
    """
    r = run_lua(code)
    assert r.returncode == 0, r.stderr
    v = [float(s) for s in r.stdout.split()]
    assert close(v[3:], v[:3], 1e-12)
    # NXRefine reads these names (read_parameters): check them with h5py
    with h5py.File(dst) as f:
        d = f["f1/instrument/detector"]
        assert d["distance"][()] == pytest.approx(p["distance"], rel=1e-12)
        assert d["distance"].attrs["units"] == "mm"
        assert d["pixel_size"][()] == pytest.approx(p["pixel_size"], rel=1e-12)
        assert d["beam_center_x"][()] == pytest.approx(p["xc"], rel=1e-12)
        assert d["detector_orientation"][()].decode() == p["orientation"]
        assert np.allclose(d["orientation_matrix"][()], p["U"], rtol=1e-12)
        g = f["f1/instrument/goniometer"]
        assert g["phi"][()] == pytest.approx(p["phi"]) and g["phi"].attrs["step"] == pytest.approx(p["phi_step"])
        assert g["chi"][()] == pytest.approx(p["chi"])
        assert f["f1/instrument/monochromator/wavelength"][()] == pytest.approx(p["wavelength"])
        assert f["entry/sample/unitcell_a"][()] == pytest.approx(p["cell"][0])
        assert f["entry/sample/unitcell_gamma"][()] == pytest.approx(p["cell"][5])


def test_missing_geometry_names_what_and_where(tmp_path):
    rng = np.random.default_rng(3)
    p = random_geometry(rng)
    path = tmp_path / "g.nxs"
    write_nxrefine_file(path, p)
    with h5py.File(path, "a") as f:
        del f["f1/instrument/detector/distance"]
    r = run_lua(f"crystal.geometry({json.dumps(str(path))})")
    assert r.returncode != 0
    assert "/f1/instrument/detector/distance" in r.stderr and str(path) in r.stderr
    empty = tmp_path / "empty.nxs"
    with h5py.File(empty, "w") as f:
        f.create_group("entry")
    r = run_lua(f"crystal.geometry({json.dumps(str(empty))})")
    assert r.returncode != 0
    assert "/f1/instrument/detector" in r.stderr and "/entry/instrument/detector" in r.stderr
    with h5py.File(path, "a") as f:
        f["f1/instrument/detector/distance"] = 1.0
        f["f1/instrument/detector/distance"].attrs["units"] = "parsec"
    r = run_lua(f"crystal.geometry({json.dumps(str(path))})")
    assert r.returncode != 0 and "parsec" in r.stderr
    r = run_lua("local g = crystal.geometry{distance = 100} print(pcall(g.hkl, g, 1, 2, 3))")
    assert r.returncode == 0 and "false" in r.stdout and "unit cell" in r.stdout


SIM_LUA = """
local folder, truth_path = arg[1], arg[2]
-- U: Gram-Schmidt on the rows of a rough rotation
local r = {{0.8, -0.5, 0.33}, {0.55, 0.83, -0.1}, {-0.22, 0.25, 0.94}}
local function norm(v) local n = math.sqrt(v[1]^2 + v[2]^2 + v[3]^2) return {v[1]/n, v[2]/n, v[3]/n} end
local function dot(a, b) return a[1]*b[1] + a[2]*b[2] + a[3]*b[3] end
local a = norm(r[1])
local b = {r[2][1] - dot(r[2], a)*a[1], r[2][2] - dot(r[2], a)*a[2], r[2][3] - dot(r[2], a)*a[3]}
b = norm(b)
local c = {a[2]*b[3] - a[3]*b[2], a[3]*b[1] - a[1]*b[3], a[1]*b[2] - a[2]*b[1]}
local g = crystal.geometry{distance = 200, pixel_size = 0.172, beam_center_x = 480.3, beam_center_y = 190.6,
  wavelength = 0.5, phi_start = 10, phi_step = 0.2, chi = -3, omega = 2, yaw = 0.3, pitch = -0.2, roll = 0.1,
  unit_cell = {8.1, 9.3, 10.2, 90, 97, 90}, orientation_matrix = {a, b, c}}
local s = crystal.simulate{geometry = g, frames = FRAMES, modules = {2, 2}, seed = 7, mosaic = 0.2,
  intensity = {5e3, 5e5}, background = 5, folder = folder, prefix = "sim"}
local out = assert(io.open(truth_path, "w"))
for _, p in ipairs(s.reflections) do
  out:write(string.format("%d %d %d %.17g %.17g %.17g %.17g\\n", p.h, p.k, p.l, p.x, p.y, p.z, p.intensity))
end
out:close()
print(s.rows, s.columns, #s.reflections)
"""

ANALYSE_LUA = """
local f <close> = nx.load(arg[1], "rw")
local g = crystal.geometry(f)
print(string.format("GEOMETRY %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g", g.distance, g.pixel_size,
  g.beam_center_x, g.beam_center_y, g.wavelength, g.phi_start, g.phi_step, g.chi))
local data = f.entry.instrument.detector.data
local st = crystal.frame_stats(data)
st:write(f)
print("STATS", st.maximum, st.first, st.last, st.hot_pixels)
local p = crystal.find_peaks(data, {threshold = 60, min_pixels = 10})
p:write(f, {geometry = g})
print("PEAKS", #p)
"""


@pytest.fixture(scope="module")
def simulated_stack(tmp_path_factory):
    """60 simulated frames written as CBF by crystal.simulate, stacked by `nxlua stack`."""
    tmp = tmp_path_factory.mktemp("sim")
    frames = tmp / "frames"
    frames.mkdir()
    truth = tmp / "truth.txt"
    (tmp / "sim.lua").write_text("FRAMES = 60" + SIM_LUA)
    (tmp / "analyse.lua").write_text(ANALYSE_LUA)
    r = subprocess.run([BIN, str(tmp / "sim.lua"), str(frames), str(truth)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows, cols, n = (int(v) for v in r.stdout.split())
    stack = tmp / "scan.nxs"
    r = subprocess.run([BIN, "stack", *sorted(str(p) for p in frames.glob("sim_*.cbf")), "--out", str(stack), "--quiet"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([BIN, str(tmp / "analyse.lua"), str(stack)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    t = np.loadtxt(truth, ndmin=2)
    return {"stack": stack, "truth": t, "rows": rows, "cols": cols, "out": r.stdout, "frames": 60}


def test_simulated_cbf_frames_carry_full_pilatus_headers(simulated_stack):
    with h5py.File(simulated_stack["stack"]) as f:
        d = f["entry/instrument/detector"]
        assert d["data"].shape == (60, simulated_stack["rows"], simulated_stack["cols"])
        assert d["distance"][()] == pytest.approx(0.2) and d["distance"].attrs["units"] == "m"
        assert d["x_pixel_size"][()] == pytest.approx(172e-6)
        assert d["beam_center_x"][()] == pytest.approx(480.3)
        phi = f["entry/instrument/NDAttributes/phi"][()]
        assert np.allclose(phi, 10 - 0.1 + 0.2 * np.arange(60))  # the start of each exposure
        assert f["entry/instrument/monochromator/wavelength"][()] == pytest.approx(0.5)
        frame = d["data"][5]
        assert (frame == -1).sum() > 0 and (frame == -2).sum() > 0  # gaps and dead pixels
    # the stacked file's geometry is the simulation's (phi at frame centres)
    line = next(l for l in simulated_stack["out"].splitlines() if l.startswith("GEOMETRY"))
    v = [float(s) for s in line.split()[1:]]
    assert v == pytest.approx([200, 0.172, 480.3, 190.6, 0.5, 10, 0.2, -3], rel=1e-12)


def test_frame_statistics_match_numpy(simulated_stack):
    with h5py.File(simulated_stack["stack"]) as f:
        data = f["entry/instrument/detector/data"][()].astype(np.int64)
        mask = f["entry/instrument/detector/pixel_mask"][()]
        sums = f["entry/frame_sums/summed_frames/summed_frames"][()]
        summed = f["entry/frame_sums/summed_data/summed_data"][()]
        maxima = f["entry/frame_sums/maximum_data/maximum_data"][()]
        attrs = dict(f["entry/data"].attrs)
    # hot pixels: constant >= 100 on every frame; gaps and dead pixels: negative
    hot = (data.min(0) == data.max(0)) & (data.min(0) >= 100)
    expected_mask = (data.min(0) < 0) | hot
    assert np.array_equal(mask.astype(bool), expected_mask)
    assert hot.sum() == 20
    good = ~expected_mask
    assert np.allclose(sums, (data * good).sum((1, 2)))
    assert np.array_equal(summed[good], data.sum(0)[good]) and (summed[~good] == 0).all()
    assert np.array_equal(maxima[good], data.max(0)[good])
    assert attrs["maximum"] == data[:, good].max()
    assert attrs["first"] == 0 and attrs["last"] == 60


def test_peak_search_recall_and_precision_against_truth(simulated_stack):
    t = simulated_stack["truth"]
    rows, cols, nframes = simulated_stack["rows"], simulated_stack["cols"], simulated_stack["frames"]
    with h5py.File(simulated_stack["stack"]) as f:
        pk = f["entry/peaks"]
        assert pk.attrs["NX_class"] == "NXreflections"
        found = np.column_stack([pk[k][()] for k in ["x", "y", "z", "intensity", "sigx", "sigy", "sigz"]])
        polar = pk["polar_angle"][()]
        assert pk.attrs["threshold"] == 60 and pk.attrs["first"] == 0 and pk.attrs["last"] == nframes
    assert len(found) > 50

    def on_live_pixels(x, y, r=4):
        # not within r pixels of a module gap or the frame edge (487 x 195 modules, 7 and 17 pixel gaps)
        for v in np.arange(x - r, x + r + 1):
            if v < 0 or v >= cols or v % 494 >= 487:
                return False
        for v in np.arange(y - r, y + r + 1):
            if v < 0 or v >= rows or v % 212 >= 195:
                return False
        return True

    # truth peaks that a search can see whole: on live pixels, inside the frames, apart from
    # other peaks, and over 10 sigma of their box (background 5 counts over 20^3 voxels at most)
    xyz = t[:, 3:6]
    testable = []
    for i, (h, k, l, x, y, z, intensity) in enumerate(t):
        if not (3 <= z <= nframes - 4 and on_live_pixels(x, y)):
            continue
        others = np.delete(xyz, i, axis=0)
        if len(others) and (np.abs(others[:, :2] - [x, y]).max(1) < 20).__and__(np.abs(others[:, 2] - z) < 10).any():
            continue
        sigma = math.sqrt(intensity + 5 * 20 ** 3)
        if intensity > 10 * sigma:
            testable.append((x, y, z))
    testable = np.array(testable)
    assert len(testable) > 50
    matched = 0
    for x, y, z in testable:
        d = np.abs(found[:, :3] - [x, y, z])
        if ((d[:, 0] <= 0.1) & (d[:, 1] <= 0.1) & (d[:, 2] <= 0.1)).any():
            matched += 1
    assert matched >= 0.99 * len(testable), f"{matched} of {len(testable)} found within 0.1 pixel and 0.1 frame"
    # precision: every peak found is a true one (within 1 pixel and 1 frame of a reflection);
    # at the first and last frame a peak is cut by the end of the scan and its z pulled in
    for x, y, z, *_ in found[(found[:, 2] >= 1) & (found[:, 2] <= nframes - 2)]:
        d = np.abs(xyz - [x, y, z])
        assert ((d[:, 0] < 1) & (d[:, 1] < 1) & (d[:, 2] < 1)).any(), (x, y, z)
    assert (polar > 0).all() and (polar < 90).all()


def test_no_peaks_above_threshold_is_a_clear_error(simulated_stack):
    r = run_lua(f"local f = nx.load({json.dumps(str(simulated_stack['stack']))}) "
                "crystal.find_peaks(f.entry.instrument.detector.data, {threshold = 1e7})")
    assert r.returncode != 0
    assert "no peaks above the threshold 10000000 (the largest unmasked pixel is" in r.stderr and "scan.nxs" in r.stderr


@pytest.mark.skipif(__import__("os").environ.get("NXLUA_SANITIZED") == "1",
                    reason="pure Swift, 2 minutes under AddressSanitizer: the release suite runs it")
def test_incremental_statistics_and_peaks_equal_the_streaming_pass(simulated_stack):
    code = f"""
    local f = nx.load({json.dumps(str(simulated_stack['stack']))})
    local data = f.entry.instrument.detector.data
    local rows, cols = data.shape[2], data.shape[3]
    local acc = crystal.frame_accumulator(rows, cols)
    local finder = crystal.peak_finder(rows, cols, {{threshold = 60, mask = f.entry.instrument.detector.pixel_mask}})
    -- as a macro would on each frames.ready: uneven blocks
    local first = 0
    for _, n in ipairs({{7, 1, 13, 20, 19}}) do
      local block = data[string.format("%d:%d", first, first + n)]
      acc:add(block, first)
      finder:add(block, first)
      first = first + n
    end
    finder:finish()
    local whole = crystal.frame_stats(data, {{mask = false}})
    local p = crystal.find_peaks(data, {{threshold = 60}})
    print(acc.maximum == whole.maximum, (acc.frame_sums - whole.frame_sums):abs():max(), #finder == #p,
          (finder.x - p.x):abs():max(), (finder.z - p.z):abs():max())
    """
    r = run_lua(code)
    assert r.returncode == 0, r.stderr
    v = r.stdout.split()
    assert v[0] == "true" and float(v[1]) == 0 and v[2] == "true" and float(v[3]) == 0 and float(v[4]) == 0


def true_u():
    """The U of SIM_LUA: Gram-Schmidt on the rows of its rough rotation."""
    r = np.array([[0.8, -0.5, 0.33], [0.55, 0.83, -0.1], [-0.22, 0.25, 0.94]])
    a = r[0] / np.linalg.norm(r[0])
    b = r[1] - (r[1] @ a) * a
    b /= np.linalg.norm(b)
    return np.array([a, b, np.cross(a, b)])


def test_orientation_from_found_peaks(simulated_stack):
    cell = [8.1, 9.3, 10.2, 90, 97, 90]
    code = f"""
    local f = nx.load({json.dumps(str(simulated_stack['stack']))})
    local g = crystal.geometry(f)
    g:set{{yaw = 0.3, pitch = -0.2, roll = 0.1}}   -- the simulation's tilts: Pilatus headers have none
    local p = crystal.peaks(f.entry.peaks)           -- what the fixture's crystal.find_peaks wrote
    local r = crystal.orient(p, g, {{cell = {{{', '.join(map(str, cell))}}}}})
    local u = r.u:totable()
    print(r.fraction, r.indexed, r.peaks, r.rms)
    print(u[1][1], u[1][2], u[1][3], u[2][1], u[2][2], u[2][3], u[3][1], u[3][2], u[3][3])
    local h, k, l = g:hkl(p[1].x, p[1].y, p[1].z)
    print(h, k, l)
    print(pcall(crystal.orient, p, g, {{cell = {{5, 5, 5, 90, 90, 90}}}}))
    """
    r = run_lua(code)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    fraction, indexed, peaks, rms = (float(v) for v in lines[0].split())
    assert fraction >= 0.95 and rms < 5e-3  # edge peaks cut by the scan carry most of it
    u = np.array([float(v) for v in lines[1].split()]).reshape(3, 3)
    # U is the truth or its image by the monoclinic 2-fold about b ((h, k, l) -> (-h, k, -l))
    b = np.linalg.inv(bimat(*cell))
    two_fold = np.diag([-1.0, 1.0, -1.0])
    candidates = [true_u(), true_u() @ b @ two_fold @ np.linalg.inv(b)]
    angles = [math.degrees(math.acos(min(1, (np.trace(u.T @ c) - 1) / 2))) for c in candidates]
    assert min(angles) < 0.01, angles
    hkl = [float(v) for v in lines[2].split()]
    assert np.allclose(hkl, np.round(hkl), atol=0.02)
    # a wrong cell indexes nothing: a clear error with the numbers
    assert lines[3].startswith("false") and "no orientation indexes 50% of the" in lines[3]


def write_nxmx_file(path, p, frames=100):
    """The same geometry as NXmx writes it: McStas axes (z beam, y up), the detector placed by
    a depends_on chain through its module's fast and slow pixel directions, the goniometer
    as phi (scanned) -> chi -> omega rotations."""
    def mc(v):  # NXRefine lab (x beam, z up) -> McStas
        return np.array([v[1], v[2], v[0]])
    ref = NumpyGeometry(p)
    m = p["pixel_size"] * np.linalg.inv(ref.D) @ np.linalg.inv(ref.O)
    fast, slow = m[:, 0], m[:, 1]
    origin = np.array([p["distance"], 0, 0]) - p["xc"] * fast - p["yc"] * slow

    def transformation(group, name, value, kind, vector, depends_on, units):
        d = group.create_dataset(name, data=value)
        d.attrs["transformation_type"] = kind
        d.attrs["vector"] = np.asarray(vector, float)
        d.attrs["depends_on"] = depends_on
        d.attrs["units"] = units
    with h5py.File(path, "w") as f:
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        e["definition"] = "NXmx"
        det = e.create_group("instrument/detector")
        det.attrs["NX_class"] = "NXdetector"
        det["depends_on"] = "/entry/instrument/detector/transformations/origin"
        t = det.create_group("transformations")
        t.attrs["NX_class"] = "NXtransformations"
        transformation(t, "origin", np.linalg.norm(origin) / 1000, "translation", mc(origin / np.linalg.norm(origin)), ".", "m")
        mod = det.create_group("module")
        mod.attrs["NX_class"] = "NXdetector_module"
        transformation(mod, "module_offset", 0.0, "translation", [1, 0, 0], "/entry/instrument/detector/transformations/origin", "mm")
        transformation(mod, "fast_pixel_direction", p["pixel_size"], "translation", mc(fast / p["pixel_size"]), "module_offset", "mm")
        transformation(mod, "slow_pixel_direction", p["pixel_size"], "translation", mc(slow / p["pixel_size"]), "module_offset", "mm")
        beam = e.create_group("instrument/beam")
        beam.attrs["NX_class"] = "NXbeam"
        beam["incident_wavelength"] = p["wavelength"]
        beam["incident_wavelength"].attrs["units"] = "angstrom"
        s = e.create_group("sample")
        s.attrs["NX_class"] = "NXsample"
        s["depends_on"] = "/entry/sample/transformations/phi"
        st = s.create_group("transformations")
        transformation(st, "phi", p["phi"] + p["phi_step"] * np.arange(frames), "rotation", mc([0, 0, 1]), "chi", "deg")
        transformation(st, "chi", p["chi"], "rotation", mc([1, 0, 0]), "omega", "deg")
        transformation(st, "omega", math.radians(p["omega"]), "rotation", mc([0, 0, 1]), ".", "rad")


def test_nxmx_depends_on_chains_give_the_same_geometry(tmp_path):
    rng = np.random.default_rng(23)
    for trial in range(6):
        p = random_geometry(rng)
        # NXmx has no sample offset here, theta 0, and this detector orientation
        p.update(theta=0.0, xs=0.0, ys=0.0, zs=0.0, orientation="-y +z -x", chi=abs(p["chi"]) + 1)
        if trial == 5:
            p.update(yaw=0.0, pitch=0.0, roll=0.0)
        path = tmp_path / f"mx{trial}.nxs"
        write_nxmx_file(path, p)
        pts = np.column_stack([rng.uniform(0, 1475, 20), rng.uniform(0, 1679, 20), rng.uniform(0, 99, 20)])
        pts_file = tmp_path / f"p{trial}.txt"
        pts_file.write_text("\n".join(f"{float(x)!r} {float(y)!r} {float(z)!r}" for x, y, z in pts))
        u = ", ".join("{" + ", ".join(repr(float(v)) for v in row) + "}" for row in p["U"])
        code = (f"FILE = {json.dumps(str(path))}; PTS = {json.dumps(str(pts_file))}"
                + POINTS_LUA.replace("local g = crystal.geometry(FILE)",
                                     f"local g = crystal.geometry(FILE) g:set{{unit_cell = {{{', '.join(repr(float(v)) for v in p['cell'])}}}, orientation_matrix = {{{u}}}}}"))
        r = run_lua(code)
        assert r.returncode == 0, r.stderr
        got = np.array([[float(v) for v in line.split()] for line in r.stdout.strip().splitlines()])
        ref = NumpyGeometry(p)
        for row, (x, y, z) in zip(got, pts):
            assert close(row[6:9], ref.lab(x, y, z)), (trial, row[6:9], ref.lab(x, y, z))
            assert close(row[9:11], ref.angles(x, y, z))
            assert close(row[3:6], ref.gvec(x, y, z))
            assert close(row[0:3], ref.hkl(x, y, z))


def test_broken_nxmx_chain_names_the_transformation(tmp_path):
    p = random_geometry(np.random.default_rng(2))
    p.update(theta=0.0, xs=0.0, ys=0.0, zs=0.0, orientation="-y +z -x")
    path = tmp_path / "mx.nxs"
    write_nxmx_file(path, p)
    with h5py.File(path, "a") as f:
        del f["entry/sample/transformations/chi"].attrs["depends_on"]
    r = run_lua(f"crystal.geometry({json.dumps(str(path))})")
    assert r.returncode != 0 and "/entry/sample/transformations/chi" in r.stderr and "@depends_on" in r.stderr
    with h5py.File(path, "a") as f:
        f["entry/sample/transformations/chi"].attrs["depends_on"] = "/entry/sample/transformations/phi"
    r = run_lua(f"crystal.geometry({json.dumps(str(path))})")
    assert r.returncode != 0 and "does not end" in r.stderr


def test_refinement_recovers_the_cell_and_orientation(simulated_stack):
    truth = [8.1, 9.3, 10.2, 90, 97, 90]
    start = [8.13, 9.28, 10.23, 90, 96.8, 90]
    code = f"""
    local f = nx.load({json.dumps(str(simulated_stack['stack']))})
    local g = crystal.geometry(f)
    g:set{{yaw = 0.3, pitch = -0.2, roll = 0.1}}
    local p = crystal.peaks(f.entry.peaks)
    local o = crystal.orient(p, g, {{cell = {{{', '.join(map(str, start))}}}, tolerance = 0.08}})
    local r = crystal.refine(p, g, {{symmetry = "monoclinic", tolerance = 0.08}})
    print(table.concat(r.cell, " "))
    local u = r.u:totable()
    print(u[1][1], u[1][2], u[1][3], u[2][1], u[2][2], u[2][3], u[3][1], u[3][2], u[3][3])
    print(r.rms_before, r.rms, r.used, r.peaks)
    print(pcall(crystal.refine, p, g, {{symmetry = "rhombic"}}))
    """
    r = run_lua(code)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    cell = [float(v) for v in lines[0].split()]
    assert np.allclose(cell, truth, rtol=1e-4), cell
    u = np.array([float(v) for v in lines[1].split()]).reshape(3, 3)
    b = np.linalg.inv(bimat(*truth))
    candidates = [true_u(), true_u() @ b @ np.diag([-1.0, 1.0, -1.0]) @ np.linalg.inv(b)]
    angles = [math.degrees(math.acos(min(1, (np.trace(u.T @ c) - 1) / 2))) for c in candidates]
    assert min(angles) < 0.01, angles
    before, after, used, peaks = (float(v) for v in lines[2].split())
    assert after < before / 5 and used >= 0.8 * peaks
    assert lines[3].startswith("false") and "symmetry must be one of" in lines[3]


def test_pixels_of_a_reflection_index_back_and_help_texts(tmp_path):
    rng = np.random.default_rng(31)
    p = random_geometry(rng)
    path = tmp_path / "g.nxs"
    write_nxrefine_file(path, p)
    code = f"""
    local g = crystal.geometry({json.dumps(str(path))})
    local n = 0
    for _, hkl in ipairs({{{{1, 0, 0}}, {{1, -2, 1}}, {{0, 3, -1}}}}) do
      for _, at in ipairs(g:pixels(hkl[1], hkl[2], hkl[3])) do
        local h, k, l = g:hkl(at.x, at.y, at.z)
        assert(math.abs(h - hkl[1]) < 1e-8 and math.abs(k - hkl[2]) < 1e-8 and math.abs(l - hkl[3]) < 1e-8)
        n = n + 1
      end
    end
    print(n)
    help(g)
    help(crystal.refine)
    """
    r = run_lua(code)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert int(lines[0]) >= 4
    assert "crystal.Geometry:hkl" in r.stdout and "Levenberg-Marquardt" in r.stdout


def test_docs_pictures_script_runs(tmp_path):
    """scripts/examples/crystal_doc.lua makes docs/crystal.md's pictures: the 2 theta map
    rises away from the beam centre, and the peak frame shows its markers."""
    from PIL import Image
    root = pathlib.Path(__file__).resolve().parents[2]
    r = subprocess.run([BIN, str(root / "scripts/examples/crystal_doc.lua"), str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    geometry = Image.open(tmp_path / "crystal_geometry.png").convert("RGB")
    peaks = Image.open(tmp_path / "crystal_peaks.png").convert("RGB")
    assert geometry.size == (980, 560) and peaks.size == (980, 330)
    # the reciprocal-space picture: before and after symmetrization, the PDF's input
    space = Image.open(tmp_path / "crystal_pdf.png").convert("RGB")
    assert space.size == (980, 360) and len(space.getcolors(1 << 20)) > 100
    assert len(geometry.getcolors(1 << 20)) > 100 and len(peaks.getcolors(1 << 20)) > 100
    # the red markers of the found peaks (and of the beam centre) are drawn
    red = [c for n, c in peaks.getcolors(1 << 20) if c[0] > 200 and c[1] < 60 and c[2] < 60]
    assert red, "no red marker in crystal_peaks.png"
