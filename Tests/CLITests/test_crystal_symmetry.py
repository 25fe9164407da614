"""crystal.symmetrize and crystal.pdf against independent numpy implementations: the
Laue classes written here from their own generators (closed with numpy), symmetrization
by coordinates (M (h, k, l) -> nearest voxel, off-grid and outside images left out), the
punch / fill / taper of the PDF with np.rint and np.bincount, and numpy.fft.fftn."""
import json
import math
import subprocess

import h5py
import numpy as np
import pytest

from conftest import BIN


def run(code, timeout=300):
    return subprocess.run([BIN, "-e", code], capture_output=True, text=True, timeout=timeout)


# generators chosen differently from the Swift core's (six-fold instead of three-fold and
# two-fold, mirrors instead of two-folds), acting on column (h, k, l)
I = -np.eye(3, dtype=int)
M = lambda *rows: np.array(rows, dtype=int)  # noqa: E731
SIX = M([1, 1, 0], [-1, 0, 0], [0, 0, 1])          # (h, k, l) -> (h + k, -h, l)
MIRROR_3M1 = M([0, -1, 0], [-1, 0, 0], [0, 0, 1])   # (h, k, l) -> (-k, -h, l)
MIRROR_31M = M([0, 1, 0], [1, 0, 0], [0, 0, 1])     # (h, k, l) -> (k, h, l)
FOUR = M([0, -1, 0], [1, 0, 0], [0, 0, 1])
THREE_111 = M([0, 0, 1], [1, 0, 0], [0, 1, 0])
MIRROR_A = M([-1, 0, 0], [0, 1, 0], [0, 0, 1])
MIRROR_B = M([1, 0, 0], [0, -1, 0], [0, 0, 1])
MIRROR_C = M([1, 0, 0], [0, 1, 0], [0, 0, -1])
GENERATORS = {
    "-1": [I],
    "2/m": [MIRROR_B, I],
    "mmm": [MIRROR_A, MIRROR_B, MIRROR_C],
    "4/m": [FOUR, MIRROR_C],
    "4/mmm": [FOUR, MIRROR_C, MIRROR_A],
    "-3": [SIX @ SIX, I],
    "-3m1": [SIX @ SIX, I, MIRROR_3M1],
    "-31m": [SIX @ SIX, I, MIRROR_31M],
    "6/m": [SIX, MIRROR_C],
    "6/mmm": [SIX, MIRROR_C, MIRROR_3M1],
    "m-3": [THREE_111, MIRROR_A, MIRROR_B, MIRROR_C],
    "m-3m": [THREE_111, FOUR, I],
}
ORDERS = {"-1": 2, "2/m": 4, "mmm": 8, "4/m": 8, "4/mmm": 16, "-3": 6, "-3m1": 12, "-31m": 12,
          "6/m": 12, "6/mmm": 24, "m-3": 24, "m-3m": 48}


def close(gens):
    ops = [np.eye(3, dtype=int)]
    seen = {ops[0].tobytes()}
    i = 0
    while i < len(ops):
        for g in gens:
            p = g @ ops[i]
            if p.tobytes() not in seen:
                seen.add(p.tobytes())
                ops.append(p)
        i += 1
    return ops


def np_symmetrize(a, ops, origin, step):
    """By coordinates: every voxel's (h, k, l), its image, the nearest voxel if the image
    is a grid point inside the grid."""
    nl, nk, nh = a.shape
    size = np.array([nh, nk, nl])
    il, ik, ih = np.indices(a.shape)
    idx = np.stack([ih.ravel(), ik.ravel(), il.ravel()])
    o, s = np.array(origin, float)[:, None], np.array(step, float)[:, None]
    hkl = o + s * idx
    out = np.zeros(a.size)
    for m in ops:
        img = m @ hkl
        j = np.rint((img - o) / s).astype(int)
        on = np.all(np.abs(img - (o + s * j)) < 1e-6 * s, axis=0) & np.all((j >= 0) & (j < size[:, None]), axis=0)
        out[on] += a[j[2][on], j[1][on], j[0][on]]
    return out.reshape(a.shape)


def write_transform(path, v, n, origin, step, lengths=(1.0, 1.0, 1.0), angles=(90, 90, 90)):
    nl, nk, nh = v.shape
    with h5py.File(path, "w") as f:
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        t = e.create_group("transform")
        t.attrs["NX_class"] = "NXdata"
        t["data"], t["weights"] = v, n
        for name, i, count in (("Qh", 0, nh), ("Qk", 1, nk), ("Ql", 2, nl)):
            t[name] = origin[i] + step[i] * np.arange(count)
            t[name].attrs["scaling_factor"] = lengths[i]
        t.attrs["signal"] = "data"
        t.attrs["axes"] = ["Ql", "Qk", "Qh"]
        t.attrs["angles"] = [angles[2], angles[1], angles[0]]


def laue_ops(name):
    r = run(f"for _, m in ipairs(crystal.laue({json.dumps(name)})) do "
            "print(m[1][1], m[1][2], m[1][3], m[2][1], m[2][2], m[2][3], m[3][1], m[3][2], m[3][3]) end")
    assert r.returncode == 0, r.stderr
    return [np.array(line.split(), dtype=int).reshape(3, 3) for line in r.stdout.splitlines()]


def as_set(ops):
    return {m.tobytes() for m in ops}


@pytest.mark.parametrize("name", list(ORDERS))
def test_laue_classes_are_the_groups_closed_from_other_generators(name):
    ops = laue_ops(name)
    assert len(ops) == ORDERS[name] == len(as_set(ops))
    assert as_set(ops) == as_set(close(GENERATORS[name]))
    # a group: closed under products, and each operator keeps |Q| for the lattice's metric
    assert all((a @ b).tobytes() in as_set(ops) for a in ops for b in ops)
    hexagonal = name in ("-3", "-3m1", "-31m", "6/m", "6/mmm")
    cubic = name in ("m-3", "m-3m")
    g = np.diag([1.0, 1.0 if (hexagonal or cubic or "4" in name) else 1.7, 1.0 if cubic else 2.3])
    if hexagonal:  # reciprocal metric of a hexagonal lattice (gamma* = 60 deg)
        g[0, 1] = g[1, 0] = 0.5
    for m in ops:
        assert np.allclose(m.T @ g @ m, g), (name, m)


def test_trigonal_equivalents_are_the_true_ones():
    """(1, 2, 3) on hexagonal axes (i = -3): -3 gives (h k i) cycled and inverted; -3m1 adds
    (k, h, -l) and -31m (k, h, l) with their cycles."""
    def images(name):
        return {tuple(m @ np.array([1, 2, 3])) for m in laue_ops(name)}
    cyc = {(1, 2, 3), (2, -3, 3), (-3, 1, 3)}
    minus3 = cyc | {(-h, -k, -l) for h, k, l in cyc}
    assert images("-3") == minus3
    swap_l = {(k, h, -l) for h, k, l in minus3}
    swap = {(k, h, l) for h, k, l in minus3}
    assert images("-3m1") == minus3 | swap_l == images("-3m")
    assert images("-31m") == minus3 | swap
    assert images("6/m") == minus3 | {(-h, -k, l) for h, k, l in minus3}


GRID_O, GRID_S = (-2.0, -2.0, -1.5), (0.1, 0.1, 0.25)
SHAPE = (13, 41, 41)  # (l, k, h): h, k from -2 to 2, l from -1.5 to 1.5


def random_grid(seed, shape=SHAPE):
    rng = np.random.default_rng(seed)
    v = rng.uniform(0, 100, shape)
    n = rng.integers(0, 3, shape).astype(float)
    v[n == 0] = 0
    return v, n


def symmetrize_file(tmp_path, name, v, n, origin=GRID_O, step=GRID_S):
    src, out = tmp_path / f"in{abs(hash(name))}.nxs", tmp_path / f"out{abs(hash(name))}.nxs"
    write_transform(src, v, n, origin, step)
    r = run(f"local r = crystal.symmetrize({json.dumps(str(src))}, {json.dumps(name)}, {{output = {json.dumps(str(out))}}}) print(r.order)")
    return r, out


@pytest.mark.parametrize("name", list(ORDERS))
def test_symmetrize_equals_numpy_and_is_invariant(tmp_path, name):
    step = (0.1, 0.1, 0.1) if name in ("m-3", "m-3m") else GRID_S
    shape = (41, 41, 41) if name in ("m-3", "m-3m") else SHAPE
    origin = (-2.0, -2.0, -2.0) if name in ("m-3", "m-3m") else GRID_O
    v, n = random_grid(7, shape)
    r, out = symmetrize_file(tmp_path, name, v, n, origin, step)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(ORDERS[name])]
    with h5py.File(out) as f:
        t = f["entry/transform"]
        sv, sn = t["data"][()], t["weights"][()]
        assert np.allclose(t["Qh"][()], origin[0] + step[0] * np.arange(shape[2]))
        assert f["entry/data/v"].shape == sv.shape
    ops = close(GENERATORS[name])
    for got, a in ((sv, v), (sn, n)):
        want = np_symmetrize(a, ops, origin, step)
        assert np.allclose(got, want, rtol=1e-12, atol=0)
    # invariant under each generator: value at x equals value at g x wherever g x is inside
    for g in GENERATORS[name]:
        moved = np_symmetrize(sv, [g], origin, step)
        inside = np_symmetrize(np.ones_like(sv), [g], origin, step) > 0
        assert np.allclose(moved[inside], sv[inside], rtol=1e-12)
    # the mean v / n of a voxel and of its equivalents agree
    assert np.isclose(sn.sum(), sum(np_symmetrize(n, [m], origin, step).sum() for m in ops))


def test_minus3_and_minus3m_differ_on_hexagonal_data(tmp_path):
    v, n = random_grid(11)
    results = {}
    for name in ("-3", "-3m1", "-31m"):
        r, out = symmetrize_file(tmp_path, name, v, n)
        assert r.returncode == 0, r.stderr
        with h5py.File(out) as f:
            results[name] = f["entry/transform/data"][()]
    assert not np.allclose(results["-3"], results["-3m1"])
    assert not np.allclose(results["-3m1"], results["-31m"])
    # -3m1 is -3 summed once more over (h, k, l) -> (k, h, -l)
    swap = M([0, 1, 0], [1, 0, 0], [0, 0, -1])
    assert np.allclose(results["-3m1"], results["-3"] + np_symmetrize(results["-3"], [swap], GRID_O, GRID_S))


def test_incompatible_grids_are_refused_naming_the_axes(tmp_path):
    v, n = random_grid(3, (5, 9, 11))
    r, _ = symmetrize_file(tmp_path, "4/m", v, n, origin=(-1.0, -1.0, -1.0), step=(0.2, 0.25, 0.5))
    assert r.returncode != 0
    assert "maps" in r.stderr and "steps differ" in r.stderr and ("h onto k" in r.stderr or "k onto h" in r.stderr), r.stderr
    r, _ = symmetrize_file(tmp_path, "mmm", v, n, origin=(-1.03, -1.0, -1.0), step=(0.2, 0.25, 0.5))
    assert r.returncode != 0 and "off the grid along h" in r.stderr, r.stderr
    r, _ = symmetrize_file(tmp_path, "mmm", v, n, origin=(-1.0, -1.0, -1.0), step=(0.2, 0.25, 0.5))
    assert r.returncode == 0, r.stderr
    r = run('crystal.laue("422")')
    assert r.returncode != 0 and "unknown Laue class" in r.stderr and "m-3m" in r.stderr


# ---- PDF ----

def np_tukey(n, alpha):
    if n < 2 or alpha <= 0:
        return np.ones(n)
    x = np.arange(n) / (n - 1)
    w = np.ones(n)
    lo, hi = x < alpha / 2, x > 1 - alpha / 2
    w[lo] = 0.5 * (1 - np.cos(2 * np.pi * x[lo] / alpha))
    w[hi] = 0.5 * (1 - np.cos(2 * np.pi * (1 - x[hi]) / alpha))
    return w


def np_pdf_inputs(v, n, origin, step, punch, shell, taper):
    data = np.where(n > 0, v / np.where(n > 0, n, 1), 0.0)
    nl, nk, nh = v.shape
    ax = [origin[i] + step[i] * np.arange(c) for i, c in enumerate((nh, nk, nl))]
    near = [np.rint(a) for a in ax]
    L, K, H = np.meshgrid(ax[2] - near[2], ax[1] - near[1], ax[0] - near[0], indexing="ij")
    d2 = H * H + K * K + L * L
    NL, NK, NH = np.meshgrid(near[2], near[1], near[0], indexing="ij")
    key = np.unique(np.stack([NL.ravel(), NK.ravel(), NH.ravel()]), axis=1, return_inverse=True)[1].reshape(v.shape)
    r2, outer = punch * punch * (1 + 1e-9), (punch + shell) ** 2 * (1 + 1e-9)  # surfaces included
    in_shell = (d2 > r2) & (d2 <= outer) & (n > 0)
    sums = np.bincount(key[in_shell], weights=data[in_shell], minlength=key.max() + 1)
    counts = np.bincount(key[in_shell], minlength=key.max() + 1)
    hole = d2 <= r2
    fill = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    punched = data.copy()
    punched[hole] = fill[key[hole]]
    w = np_tukey(nl, taper)[:, None, None] * np_tukey(nk, taper)[None, :, None] * np_tukey(nh, taper)[None, None, :]
    return data * w, punched * w, hole


def np_fft(d):
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(d)))


def pdf_file(tmp_path, v, n, origin, step, opts, lengths=(1.0, 1.0, 1.0), angles=(90, 90, 90)):
    src, out, dump = tmp_path / "pin.nxs", tmp_path / "pdf.nxs", tmp_path / "dump.nxs"
    write_transform(src, v, n, origin, step, lengths, angles)
    r = run(f"""
        local r = crystal.pdf({json.dumps(str(src))}, {{output = {json.dumps(str(out))}, {opts}}})
        local o <close> = nx.load({json.dumps(str(dump))}, "w")
        o.entry = nx.group("NXentry")
        for _, k in ipairs{{"total", "difference", "total_imag", "difference_imag", "total_input", "difference_input", "x", "y", "z"}} do
          o.entry[k] = r[k]
        end
        print(r.punched, r.holes, r.units)
    """)
    assert r.returncode == 0, r.stderr
    with h5py.File(dump) as f:
        got = {k: f["entry"][k][()] for k in f["entry"]}
    return r.stdout.split(), got, out


PDF_O, PDF_S = (-3.0, -3.0, -2.0), (0.1, 0.1, 0.125)
PDF_SHAPE = (32, 60, 60)  # even sizes: h = 0 at index N / 2


def test_pdf_equals_numpy_fft_of_the_same_input(tmp_path):
    rng = np.random.default_rng(5)
    v = rng.uniform(0, 10, PDF_SHAPE)
    n = rng.integers(0, 3, PDF_SHAPE).astype(float)
    words, got, out = pdf_file(tmp_path, v, n, PDF_O, PDF_S, "punch = 0.23, shell = 0.15, taper = 0.3",
                               lengths=(2 * np.pi / 4.0, 2 * np.pi / 5.0, 2 * np.pi / 6.0))
    total_in, diff_in, hole = np_pdf_inputs(v, n, PDF_O, PDF_S, 0.23, 0.15, 0.3)
    assert int(words[0]) == hole.sum() and words[2] == "Angstrom"
    assert np.allclose(got["total_input"], total_in, rtol=1e-12, atol=1e-12)
    assert np.allclose(got["difference_input"], diff_in, rtol=1e-12, atol=1e-12)
    for key, d in (("total", got["total_input"]), ("difference", got["difference_input"])):
        want = np_fft(d)
        scale = np.abs(want).max()
        assert np.abs(got[key] - want.real).max() <= 1e-9 * scale
        assert np.abs(got[key + "_imag"] - want.imag).max() <= 1e-9 * scale
    # axes: 1 / step unit cells across, lattice units times a, b, c (4, 5, 6 Angstrom)
    for key, i, a, count in (("x", 0, 4.0, 60), ("y", 1, 5.0, 60), ("z", 2, 6.0, 32)):
        assert np.allclose(got[key], np.fft.fftshift(np.fft.fftfreq(count, PDF_S[i])) * a)
    with h5py.File(out) as f:
        d = f["entry/difference_pdf"]
        assert d.attrs["signal"] == "data" and list(d.attrs["axes"]) == ["z", "y", "x"]
        assert d["x"].attrs["units"] == "Angstrom"
        assert np.allclose(d["data"][()], got["difference"])
        assert np.allclose(f["entry/total_pdf/data"][()], got["total"])


def test_punch_removes_exactly_the_voxels_within_the_radius(tmp_path):
    """Counted in exact arithmetic (fractions): h = -3 + i / 10, l = -2 + j / 8; a radius of
    0.3 r.l.u. has voxels exactly on its surface (h offset 0.3), which are punched."""
    from fractions import Fraction
    nl, nk, nh = PDF_SHAPE
    off = lambda x: (x - round(x)) ** 2  # noqa: E731  (round: half to even, as np.rint)
    oh = [off(Fraction(-30 + i, 10)) for i in range(nh)]
    ol = [off(Fraction(-16 + j, 8)) for j in range(nl)]
    r2 = Fraction(3, 10) ** 2
    within = np.array([[[ol[j] + oh[k] + oh[i] <= r2 for i in range(nh)] for k in range(nk)] for j in range(nl)])
    assert (np.array([[[ol[j] + oh[k] + oh[i] == r2 for i in range(nh)] for k in range(nk)] for j in range(nl)])).sum() > 0
    v = np.full(PDF_SHAPE, 5.0)
    n = np.ones(PDF_SHAPE)
    v[within] = 1000.0  # Bragg peaks
    words, got, _ = pdf_file(tmp_path, v, n, PDF_O, PDF_S, "punch = 0.3, shell = 0.1, taper = 0")
    assert int(words[0]) == within.sum()
    # filled from the shell (all 5), the rest untouched
    assert np.array_equal(got["difference_input"], np.full(PDF_SHAPE, 5.0))
    assert np.array_equal(got["total_input"], v)


def test_a_cosine_modulation_gives_peaks_at_its_distance(tmp_path):
    """D(h) = 1 + cos(2 pi h x0) on a cell of a = 4 A: the PDF is a delta at 0 and two at
    x = +-x0 (lattice units), i.e. +-x0 a Angstrom, nothing else."""
    x0 = 2.5  # lattice units: a period of 0.4 in h, 1 / (N step) = 1/6 so bin 15 from the middle
    nl, nk, nh = PDF_SHAPE
    H = PDF_O[0] + PDF_S[0] * np.arange(nh)
    v = np.broadcast_to(1 + np.cos(2 * np.pi * H * x0), PDF_SHAPE).copy()
    n = np.ones(PDF_SHAPE)
    words, got, _ = pdf_file(tmp_path, v, n, PDF_O, PDF_S, "punch = 0, taper = 0", lengths=(2 * np.pi / 4.0, 1.0, 1.0))
    p = got["total"]
    peaks = np.argwhere(np.abs(p) > 1e-6 * np.abs(p).max())
    assert sorted(map(tuple, peaks)) == [(nl // 2, nk // 2, nh // 2 - 15), (nl // 2, nk // 2, nh // 2), (nl // 2, nk // 2, nh // 2 + 15)]
    x = got["x"]
    assert np.isclose(x[nh // 2 + 15], x0 * 4.0) and np.isclose(x[nh // 2 - 15], -x0 * 4.0)
    assert np.isclose(p[nl // 2, nk // 2, nh // 2 + 15], p.size / 2)
    assert np.isclose(p[nl // 2, nk // 2, nh // 2], p.size)
    assert np.abs(got["total_imag"]).max() < 1e-6 * p.size


def test_pdf_errors(tmp_path):
    v, n = np.ones(PDF_SHAPE), np.ones(PDF_SHAPE)
    src = tmp_path / "e.nxs"
    write_transform(src, v, n, PDF_O, PDF_S)
    for opts, part in (("punch = 0.7", "punch must be between 0 and 0.5"), ("taper = 2", "taper must be between 0 and 1"),
                       ("bogus = 1", "bogus")):
        r = run(f"crystal.pdf({json.dumps(str(src))}, {{{opts}}})")
        assert r.returncode != 0 and part in r.stderr, (opts, r.stderr)


def test_pdf_of_a_grid_off_centre_is_the_direct_sum(tmp_path):
    """P(x) = sum over voxels of D(h) exp(-2 pi i h . x) by the definition (dense DFT
    matrices in numpy), on a grid whose h = 0 is not at index N // 2 (nor on a voxel along l)."""
    shape = (9, 14, 16)  # (l, k, h)
    origin, step = (-0.7, -0.9, -0.35), (0.1, 0.1, 0.2)
    rng = np.random.default_rng(9)
    v, n = rng.uniform(0, 10, shape), np.ones(shape)
    _, got, _ = pdf_file(tmp_path, v, n, origin, step, "punch = 0, taper = 0")
    want = v.astype(complex)
    for axis, (o, s, count) in enumerate(zip(origin, step, (16, 14, 9))):
        h = o + s * np.arange(count)
        x = (np.arange(count) - count // 2) / (count * s)
        e = np.exp(-2j * np.pi * np.outer(x, h))  # (x, h)
        want = np.moveaxis(np.tensordot(e, want, axes=([1], [2 - axis])), 0, 2 - axis)
    scale = np.abs(want).max()
    assert np.abs(got["total"] - want.real).max() <= 1e-9 * scale
    assert np.abs(got["total_imag"] - want.imag).max() <= 1e-9 * scale
