"""crystal, part 1 completed: per-frame goniometer angles (NXRefine arrays, the stacker's
NDAttributes, NXmx chains) against numpy; refinement of goniometer and detector offsets with
the cell on simulated peaks; the radial (powder) sum of frame_stats against numpy; a
simulation written straight into a NeXus stack, equal to stacking its CBF files."""
import json
import math
import subprocess

import h5py
import hdf5plugin  # noqa: F401  (bitshuffle/LZ4 for h5py)
import numpy as np
import pytest

# the simulator, refinement and radial sum are pure Swift: under AddressSanitizer the
# heaviest tests took 2.5-5 minutes each on 2 cores; the release suite runs them
heavy = pytest.mark.skipif(__import__("os").environ.get("NXLUA_SANITIZED") == "1",
                           reason="pure Swift and slow under AddressSanitizer: the release suite runs it")

from conftest import BIN
from test_crystal import (NumpyGeometry, bimat, close, random_geometry, rotmat, run_lua, true_u,
                          write_nxmx_file, write_nxrefine_file)


class PerFrameGeometry(NumpyGeometry):
    """NXRefine's equations with phi, omega and chi given per frame (linear in between)."""

    def __init__(self, p, phi=None, omega=None, chi=None):
        super().__init__(p)
        self.phis, self.omegas, self.chis = phi, omega, chi

    @staticmethod
    def at(values, z):
        i = min(max(int(math.floor(z)), 0), len(values) - 2)
        return values[i] + (values[i + 1] - values[i]) * (z - i)

    def G(self, phi, z=None):
        p = self.p
        om = p["omega"] if self.omegas is None else self.at(self.omegas, z)
        ch = p["chi"] if self.chis is None else self.at(self.chis, z)
        return rotmat(2, p["theta"]) @ rotmat(3, om) @ rotmat(1, ch) @ rotmat(3, phi)

    def angles_at(self, z):
        p = self.p
        return p["phi"] + p["phi_step"] * z if self.phis is None else self.at(self.phis, z)

    def lab(self, x, y, z):
        p = self.p
        v2 = p["pixel_size"] * np.linalg.inv(self.O) @ np.array([x - p["xc"], y - p["yc"], 0.0])
        dvec = self.G(self.angles_at(z), z) @ np.array([p["xs"], p["ys"], p["zs"]]) - np.array([p["distance"], 0, 0])
        return np.linalg.inv(self.D) @ v2 - dvec

    def gvec(self, x, y, z):
        p = self.p
        v3 = self.lab(x, y, z)
        return np.linalg.inv(self.G(self.angles_at(z), z)) @ (v3 / np.linalg.norm(v3) / p["wavelength"] - np.array([1 / p["wavelength"], 0, 0]))


POINTS_LUA = """
local g = crystal.geometry(FILE)
local out = {}
for line in io.lines(PTS) do
  local x, y, z = line:match("(%S+) (%S+) (%S+)")
  x, y, z = tonumber(x), tonumber(y), tonumber(z)
  local qx, qy, qz = g:q(x, y, z)
  local vx, vy, vz = g:lab(x, y, z)
  local phi, omega, chi = g:goniometer(z)
  local h, k, l = 0, 0, 0
  if g.orientation_matrix then h, k, l = g:hkl(x, y, z) end
  out[#out + 1] = string.format("%.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g",
    qx, qy, qz, vx, vy, vz, phi, omega, chi, h, k, l)
end
print(table.concat(out, "\\n"))
"""


def points(tmp_path, rng, frames, name="p.txt"):
    pts = np.column_stack([rng.uniform(0, 1475, 30), rng.uniform(0, 1679, 30), rng.uniform(-0.5, frames - 0.5, 30)])
    f = tmp_path / name
    f.write_text("\n".join(f"{float(x)!r} {float(y)!r} {float(z)!r}" for x, y, z in pts))
    return pts, f


def run_points(path, pts_file):
    r = run_lua(f"FILE = {json.dumps(str(path))}; PTS = {json.dumps(str(pts_file))}" + POINTS_LUA)
    assert r.returncode == 0, r.stderr
    return np.array([[float(v) for v in line.split()] for line in r.stdout.strip().splitlines()])


def test_per_frame_angles_of_an_nxrefine_file_match_numpy(tmp_path):
    rng = np.random.default_rng(41)
    for trial in range(4):
        p = random_geometry(rng)
        n = 50
        phi = p["phi"] + np.cumsum(rng.uniform(0.05, 0.2, n)) if trial != 3 else None   # uneven rotation
        omega = p["omega"] + np.linspace(0, rng.uniform(-3, 3), n) if trial in (1, 3) else None
        chi = p["chi"] + np.linspace(0, rng.uniform(-3, 3), n) if trial in (2, 3) else None
        path = tmp_path / f"g{trial}.nxs"
        write_nxrefine_file(path, p)
        with h5py.File(path, "a") as f:
            g = f["f1/instrument/goniometer"]
            for name, values in [("phi", phi), ("omega", omega), ("chi", chi)]:
                if values is not None:
                    del g[name]
                    g[name] = values
                    if name == "phi":
                        g[name].attrs["step"] = p["phi_step"]
        pts, pts_file = points(tmp_path, rng, n, f"p{trial}.txt")
        got = run_points(path, pts_file)
        if phi is None:  # a uniform rotation from phi and its step: NXRefine's own
            phi_ref = None
        else:
            phi_ref = phi
        ref = PerFrameGeometry(p, phi_ref, omega, chi)
        for row, (x, y, z) in zip(got, pts):
            assert close(row[0:3], ref.gvec(x, y, z)), (trial, row[0:3], ref.gvec(x, y, z))
            assert close(row[3:6], ref.lab(x, y, z))
            assert close(row[9:12], np.linalg.inv(ref.U @ ref.B) @ ref.gvec(x, y, z))
            if omega is not None:
                assert row[7] == pytest.approx(PerFrameGeometry.at(omega, z), abs=1e-9)


def test_per_frame_angles_of_a_stacked_file_are_exposure_middles(tmp_path):
    """The stacker's NDAttributes: phi, omega, chi at the start of each exposure and their
    increments; an omega scan at fixed phi and an uneven phi rotation."""
    rng = np.random.default_rng(43)
    p = random_geometry(rng)
    p.update(yaw=0.0, pitch=0.0, roll=0.0, xs=0.0, ys=0.0, zs=0.0, orientation="-y +z -x", theta=0.0)
    n = 40
    for trial, (phi_start, phi_inc, omega_start, omega_inc) in enumerate([
            (np.full(n, 12.0), np.zeros(n), 5 + 0.25 * np.arange(n), np.full(n, 0.25)),    # omega scan
            (3 + np.cumsum(np.r_[0, rng.uniform(0.08, 0.12, n - 1)]), np.full(n, 0.1), np.full(n, 1.5), np.zeros(n))]):
        path = tmp_path / f"stack{trial}.nxs"
        with h5py.File(path, "w") as f:
            d = f.create_group("entry/instrument/detector")
            d["distance"] = p["distance"] / 1000
            d["distance"].attrs["units"] = "m"
            d["x_pixel_size"] = p["pixel_size"] / 1000
            d["x_pixel_size"].attrs["units"] = "m"
            d["beam_center_x"] = p["xc"]
            d["beam_center_y"] = p["yc"]
            f["entry/instrument/monochromator/wavelength"] = p["wavelength"]
            nd = f.create_group("entry/instrument/NDAttributes")
            for name, values in [("phi", phi_start), ("phi_increment", phi_inc), ("omega", omega_start),
                                 ("omega_increment", omega_inc), ("chi", np.full(n, p["chi"])), ("chi_increment", np.zeros(n))]:
                nd[name] = values
                nd[name].attrs["units"] = "deg."
        pts, pts_file = points(tmp_path, rng, n, f"s{trial}.txt")
        got = run_points(path, pts_file)
        phi_mid = phi_start + phi_inc / 2
        omega_mid = omega_start + omega_inc / 2
        ref = PerFrameGeometry(p, phi_mid, omega_mid if trial == 0 else None, None)
        if trial == 1:
            ref.p = dict(p, omega=1.5)
            ref.G0 = rotmat(3, 1.5) @ rotmat(1, p["chi"])
        for row, (x, y, z) in zip(got, pts):
            assert close(row[0:3], ref.gvec(x, y, z)), (trial, z, row[0:3], ref.gvec(x, y, z))
            assert row[6] == pytest.approx(PerFrameGeometry.at(phi_mid, z), abs=1e-9)
            if trial == 0:
                assert row[7] == pytest.approx(PerFrameGeometry.at(omega_mid, z), abs=1e-9)


def test_per_frame_chi_of_an_nxmx_chain(tmp_path):
    rng = np.random.default_rng(47)
    p = random_geometry(rng)
    p.update(theta=0.0, xs=0.0, ys=0.0, zs=0.0, orientation="-y +z -x", chi=abs(p["chi"]) + 5)
    n = 60
    path = tmp_path / "mx.nxs"
    write_nxmx_file(path, p, frames=n)
    chi = p["chi"] + np.linspace(0, 2, n)
    with h5py.File(path, "a") as f:
        t = f["entry/sample/transformations"]
        attrs = dict(t["chi"].attrs)
        del t["chi"]
        t["chi"] = chi
        for k, v in attrs.items():
            t["chi"].attrs[k] = v
    pts, pts_file = points(tmp_path, rng, n)
    got = run_points(path, pts_file)
    ref = PerFrameGeometry(p, None, None, chi)
    for row, (x, y, z) in zip(got, pts):
        assert close(row[0:3], ref.gvec(x, y, z)), (row[0:3], ref.gvec(x, y, z))
        assert row[8] == pytest.approx(PerFrameGeometry.at(chi, z), abs=1e-9)


def test_per_frame_angles_set_from_lua_and_written_in_nxrefine_layout(tmp_path):
    out = tmp_path / "g.nxs"
    code = f"""
    local g = crystal.geometry{{distance = 200, beam_center_x = 100, beam_center_y = 100, wavelength = 0.5,
                                phi_start = 0, phi_step = 0.1, omega_frames = {{1, 1.5, 2.5}}}}
    print(g:goniometer(1.5))
    print(g.omega, g.omega_frames.shape[1])
    local f <close> = nx.load({json.dumps(str(out))}, "w")
    f.entry = nx.group("NXentry")
    g:write(f)
    local g2 = crystal.geometry(f)
    print(g2:goniometer(2))
    g.omega = 3
    print(g.omega_frames, g:goniometer(2))
    print(pcall(function() g.chi_frames = {{1, 0/0}} end))
    """
    r = run_lua(code)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [float(v) for v in lines[0].split()] == pytest.approx([0.15, 2.0, 0.0])
    assert lines[1].split() == ["1.0", "3"]
    assert [float(v) for v in lines[2].split()] == pytest.approx([0.2, 2.5, 0.0])
    assert lines[3].split()[0] == "nil" and float(lines[3].split()[2]) == 3
    assert lines[4].startswith("false") and "one finite angle per frame" in lines[4]
    with h5py.File(out) as f:
        assert list(f["entry/instrument/goniometer/omega"][()]) == [1, 1.5, 2.5]


# --- a simulated scan, straight into a stack and through CBF files -----------------------

SIM_LUA = """
local folder, direct, truth_path = arg[1], arg[2], arg[3]
local r = {{0.8, -0.5, 0.33}, {0.55, 0.83, -0.1}, {-0.22, 0.25, 0.94}}
local function norm(v) local n = math.sqrt(v[1]^2 + v[2]^2 + v[3]^2) return {v[1]/n, v[2]/n, v[3]/n} end
local function dot(a, b) return a[1]*b[1] + a[2]*b[2] + a[3]*b[3] end
local a = norm(r[1])
local b = {r[2][1] - dot(r[2], a)*a[1], r[2][2] - dot(r[2], a)*a[2], r[2][3] - dot(r[2], a)*a[3]}
b = norm(b)
local c = {a[2]*b[3] - a[3]*b[2], a[3]*b[1] - a[1]*b[3], a[1]*b[2] - a[2]*b[1]}
local g = crystal.geometry{distance = 200, pixel_size = 0.172, beam_center_x = 480.3, beam_center_y = 190.6,
  wavelength = 0.5, phi_start = 10, phi_step = 0.5, chi = -25, omega = 2, yaw = 0.3, pitch = -0.2, roll = 0.1,
  unit_cell = {8.1, 9.3, 10.2, 90, 97, 90}, orientation_matrix = {a, b, c}}
local s = crystal.simulate{geometry = g, frames = 120, modules = {2, 2}, seed = 11, mosaic = 0.4,
  intensity = {5e3, 5e5}, background = 5, folder = folder, prefix = "sim"}
print(s:write_stack(direct, {prefix = "sim", quiet = true}))
local out = assert(io.open(truth_path, "w"))
for _, p in ipairs(s.reflections) do
  out:write(string.format("%d %d %d %.17g %.17g %.17g %.17g\\n", p.h, p.k, p.l, p.x, p.y, p.z, p.intensity))
end
out:close()
"""

TRUTH = {"distance": 200, "xc": 480.3, "yc": 190.6, "chi": -25, "omega": 2, "cell": [8.1, 9.3, 10.2, 90, 97, 90]}


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scan")
    frames = tmp / "frames"
    direct, stacked, truth = tmp / "direct.nxs", tmp / "stacked.nxs", tmp / "truth.txt"
    (tmp / "sim.lua").write_text(SIM_LUA)
    r = subprocess.run([BIN, str(tmp / "sim.lua"), str(frames), str(direct), str(truth)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["120"]
    r = subprocess.run([BIN, "stack", *sorted(str(p) for p in frames.glob("sim_*.cbf")), "--out", str(stacked), "--quiet"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    return {"direct": direct, "stacked": stacked, "truth": np.loadtxt(truth, ndmin=2), "tmp": tmp}


@heavy
def test_simulation_written_straight_into_a_stack_equals_stacking_its_cbf_files(scan):
    with h5py.File(scan["direct"]) as a, h5py.File(scan["stacked"]) as b:
        da, db = a["entry/instrument/detector/data"], b["entry/instrument/detector/data"]
        assert da.shape == db.shape == (120, 407, 981)
        assert da.chunks == db.chunks == (1, 407, 981) and da.compression_opts == db.compression_opts
        assert np.array_equal(da[()], db[()])
        for name in ["phi", "phi_increment", "omega", "chi", "start_angle"]:
            assert np.array_equal(a[f"entry/instrument/NDAttributes/{name}"][()], b[f"entry/instrument/NDAttributes/{name}"][()]), name
        assert list(a["entry/stacking/source_file"][()]) == list(b["entry/stacking/source_file"][()])
        for name in ["distance", "x_pixel_size", "beam_center_x", "beam_center_y"]:
            assert a[f"entry/instrument/detector/{name}"][()] == b[f"entry/instrument/detector/{name}"][()]
        mask = a["entry/instrument/detector/pixel_mask"][()]
        frame = da[7]
        assert np.array_equal(mask.astype(bool), frame < 0)   # gaps and dead pixels
    code = f"""
    local function search(path)
      local f = nx.load(path)
      local p = crystal.find_peaks(f.entry.instrument.detector.data, {{threshold = 60, mask = false}})
      return p
    end
    local a, b = search({json.dumps(str(scan['direct']))}), search({json.dumps(str(scan['stacked']))})
    print(#a, #b, (a.x - b.x):abs():max(), (a.z - b.z):abs():max(), (a.intensity - b.intensity):abs():max())
    """
    r = run_lua(code)
    assert r.returncode == 0, r.stderr
    v = r.stdout.split()
    assert int(v[0]) == int(v[1]) > 50 and float(v[2]) == 0 and float(v[3]) == 0 and float(v[4]) == 0


def test_radial_sum_of_frame_stats_matches_numpy(scan):
    out = scan["tmp"] / "stats.nxs"
    code = f"""
    local f = nx.load({json.dumps(str(scan['direct']))})
    local g = crystal.geometry(f)
    g:set{{yaw = 0.3, pitch = -0.2, roll = 0.1}}
    local st = crystal.frame_stats(f.entry.instrument.detector.data, g, {{radial_bins = 300}})
    local o <close> = nx.load({json.dumps(str(out))}, "w")
    o.entry = nx.group("NXentry")
    st:write(o)
    local q, i = st:radial(g, {{polarization = 0}})
    print(q.shape[1], st.radial_q.shape[1])
    """
    r = run_lua(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["300", "300"]
    with h5py.File(scan["direct"]) as f:
        data = f["entry/instrument/detector/data"][()].astype(np.int64)
    with h5py.File(out) as f:
        rs = f["entry/frame_sums/radial_sum"]
        assert rs.attrs["signal"] == "radial_sum" and list(rs.attrs["axes"]) == ["Q"]
        assert rs["Q"].attrs["units"] == "1/Angstrom"
        q, got, pixels = rs["Q"][()], rs["radial_sum"][()], rs["pixels"][()]
        mask = f["entry/instrument/detector/pixel_mask"][()].astype(bool)
        assert rs.attrs["polarization"] == pytest.approx(0.99)
    # numpy: NXRefine's lab vectors of every pixel, pyFAI's corrections
    p = {"distance": 200, "pixel_size": 0.172, "xc": 480.3, "yc": 190.6, "yaw": 0.3, "pitch": -0.2, "roll": 0.1,
         "orientation": "-y +z -x", "theta": 0, "omega": 2, "chi": -25, "phi": 10, "phi_step": 0.5, "wavelength": 0.5,
         "xs": 0, "ys": 0, "zs": 0, "cell": TRUTH["cell"], "U": np.eye(3)}
    ref = NumpyGeometry(p)
    rows, cols = data.shape[1:]
    y, x = np.mgrid[0:rows, 0:cols]
    m = p["pixel_size"] * np.linalg.inv(ref.D) @ np.linalg.inv(ref.O)
    v = (m @ np.stack([x.ravel() - p["xc"], y.ravel() - p["yc"], np.zeros(x.size)])).T + [p["distance"], 0, 0]
    r_ = np.linalg.norm(v, axis=1)
    cos2t = v[:, 0] / r_
    qpix = 4 * np.pi * np.sqrt((1 - cos2t) / 2) / p["wavelength"]
    normal = np.cross(m[:, 0], m[:, 1])
    normal /= np.linalg.norm(normal)
    d = abs(normal @ np.array([p["distance"], 0, 0]) - normal @ (p["xc"] * m[:, 0] + p["yc"] * m[:, 1]))
    solid = (d / r_) ** 3
    cos2chi = (v[:, 1] ** 2 - v[:, 2] ** 2) / (v[:, 1] ** 2 + v[:, 2] ** 2)
    pol = 0.5 * (1 + cos2t ** 2 - 0.99 * cos2chi * (1 - cos2t ** 2))
    good = ~mask.ravel()
    summed = data.sum(0).ravel()
    step = q[1] - q[0]
    lo = q[0] - step / 2
    assert lo == pytest.approx(qpix[good].min(), rel=1e-12) and q[-1] + step / 2 == pytest.approx(qpix[good].max(), rel=1e-12)
    b = np.minimum(((qpix - lo) / step).astype(int), len(q) - 1)
    signal = np.bincount(b[good], weights=summed[good], minlength=len(q))
    norm = np.bincount(b[good], weights=(pol * solid)[good], minlength=len(q))
    count = np.bincount(b[good], minlength=len(q))
    assert np.array_equal(pixels, count)
    filled = norm > 0
    assert np.allclose(got[filled], signal[filled] / norm[filled], rtol=1e-9, atol=0)
    assert np.isnan(got[~filled]).all()


def peaks_and_orientation(scan):
    """Peaks of the direct stack written to it once (find_peaks), for the refinements."""
    marker = scan["tmp"] / "peaks.done"
    if not marker.exists():
        code = f"""
        local f <close> = nx.load({json.dumps(str(scan['direct']))}, "rw")
        local p = crystal.find_peaks(f.entry.instrument.detector.data, {{threshold = 60}})
        p:write(f)
        """
        r = run_lua(code)
        assert r.returncode == 0, r.stderr
        marker.write_text("")


@heavy
def test_refinement_recovers_perturbed_goniometer_and_detector_offsets(scan):
    peaks_and_orientation(scan)
    code = f"""
    local f = nx.load({json.dumps(str(scan['direct']))})
    local p = crystal.peaks(f.entry.peaks)
    local g = crystal.geometry(f)
    g:set{{yaw = 0.3, pitch = -0.2, roll = 0.1}}
    -- a geometry off by a fraction of a degree and of a millimetre, and a cell off by 0.3%
    g:set{{chi = -24.8, omega = 2.15, beam_center_x = 481.0, beam_center_y = 190.0, distance = 201.2}}
    crystal.orient(p, g, {{cell = {{8.12, 9.28, 10.23, 90, 96.8, 90}}, tolerance = 0.1}})
    local r = crystal.refine(p, g, {{symmetry = "monoclinic", tolerance = 0.1,
      parameters = {{"chi", "omega", "beam_center_x", "beam_center_y", "distance"}}}})
    print(table.concat(r.cell, " "))
    local u = r.u:totable()
    print(u[1][1], u[1][2], u[1][3], u[2][1], u[2][2], u[2][3], u[3][1], u[3][2], u[3][3])
    print(r.geometry.chi, r.geometry.omega, r.geometry.beam_center_x, r.geometry.beam_center_y, r.geometry.distance)
    print(g.chi, g.omega, g.beam_center_x, g.beam_center_y, g.distance)
    print(r.rms_before, r.rms, r.used, r.peaks, r.evaluations, r.geometry_before.chi)
    """
    r = run_lua(code)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    cell = [float(v) for v in lines[0].split()]
    assert np.allclose(cell, TRUTH["cell"], rtol=1e-4), cell
    u = np.array([float(v) for v in lines[1].split()]).reshape(3, 3)
    b = np.linalg.inv(bimat(*TRUTH["cell"]))
    candidates = [true_u(), true_u() @ b @ np.diag([-1.0, 1.0, -1.0]) @ np.linalg.inv(b)]
    angles = [math.degrees(math.acos(min(1, (np.trace(u.T @ c) - 1) / 2))) for c in candidates]
    assert min(angles) < 0.01, angles
    chi, omega, xc, yc, dist = (float(v) for v in lines[2].split())
    assert [float(v) for v in lines[3].split()] == [chi, omega, xc, yc, dist]   # g holds the refined values
    assert abs(chi - TRUTH["chi"]) < 0.01 and abs(omega - TRUTH["omega"]) < 0.01, (chi, omega)
    assert abs(xc - TRUTH["xc"]) < 0.1 and abs(yc - TRUTH["yc"]) < 0.1, (xc, yc)
    assert abs(dist - TRUTH["distance"]) < 0.1, dist
    before, after, used, npeaks, evaluations, chi0 = (float(v) for v in lines[4].split())
    assert after < before / 10 and used >= 0.8 * npeaks and evaluations > 0 and chi0 == -24.8


def test_a_refinement_that_does_not_converge_is_an_error_with_the_numbers(scan):
    peaks_and_orientation(scan)
    code = f"""
    local f = nx.load({json.dumps(str(scan['direct']))})
    local p = crystal.peaks(f.entry.peaks)
    local g = crystal.geometry(f)
    g:set{{yaw = 0.3, pitch = -0.2, roll = 0.1, chi = -24.8}}
    crystal.orient(p, g, {{cell = {{8.1, 9.3, 10.2, 90, 97, 90}}, tolerance = 0.1}})
    print(pcall(crystal.refine, p, g, {{symmetry = "monoclinic", tolerance = 0.1, parameters = {{"chi"}}, max_evaluations = 2}}))
    print(pcall(crystal.refine, p, g, {{parameters = {{"chi", "tilt"}}}}))
    print(pcall(crystal.refine, p, g, {{parameters = {{"wavelength"}}}}))
    print(g.chi)
    """
    r = run_lua(code)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("false") and "over the budget of 2" in lines[0]
    assert "chi -24.8 ->" in lines[0] and "1/A at the start" in lines[0] and "cell [" in lines[0]
    assert lines[1].startswith("false") and 'unknown geometry value "tilt"' in lines[1]
    assert lines[2].startswith("false") and "scale q alike" in lines[2]
    assert float(lines[3]) == -24.8   # a failed refinement leaves g as it was
