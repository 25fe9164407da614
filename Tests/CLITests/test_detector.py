"""detector.read/header/write/synthetic end to end: nxlua's frames against fabio's (files
written by nxlua and by fabio, element by element), against cbflib (the decoder option)
and the real cbflib files in ../shared/data/cbf; every fault gives a Lua error naming
the file; docs/detector.md's examples run and print what they say."""
import os
import pathlib
import re
import struct
import subprocess

import h5py
import numpy as np
import pytest

import fabio  # scripts/requirements-peers.txt (scripts/test installs it)

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("NXLUA_BIN", str(ROOT / ".build" / "release" / "nxlua"))
SHARED = ROOT.parent / "shared" / "data" / "cbf"
# The unoptimised sanitized build takes minutes over Pilatus 2M frames: it checks the same
# code on 2 x 1 modules (407 x 487); the release run uses full 2M frames.
SANITIZED = os.environ.get("NXLUA_SANITIZED") == "1"
SYNTHETIC = "{seed = 7, modules = {2, 1}}" if SANITIZED else "{seed = 7}"
SHAPE = (407, 487) if SANITIZED else (1679, 1475)
MODEL = "PILATUS 2x1 modules" if SANITIZED else "PILATUS 2M"
BEAM = ("244.0", "204.0") if SANITIZED else ("741.5", "846.5")
# cbflib has no frame pointers: its leaks are told apart from nxlua's (a handle never
# freed) only with full unwinding (conftest.py, Tests/lsan-fast-unwind.supp)
pytestmark = pytest.mark.full_unwind


def run_ok(nxlua, code, cwd=None):
    r = nxlua("-e", code, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r.stdout


def lua_error(nxlua, code):
    r = nxlua("-e", code)
    assert r.returncode != 0, r.stdout
    assert "Segmentation" not in r.stderr and "AddressSanitizer" not in r.stderr, r.stderr
    return r.stderr


def dump(path, name, frame_expr):
    """Lua that stores an ndarray expression in an HDF5 file, read back with h5py."""
    return f'do local o <close> = nx.load("{path}", "w"); o["{name}"] = {frame_expr} end\n'


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """A synthetic Pilatus 2M frame written by nxlua (CBF, TIFF) and by fabio (CBF, TIFF),
    with the pixels as a reference in HDF5."""
    d = tmp_path_factory.mktemp("frames")
    code = f"""
        local f, text = detector.synthetic{SYNTHETIC}
        detector.write("{d}/ours.cbf", f, text)
        detector.write("{d}/ours.tif", f, text)
        local out = io.open("{d}/header.txt", "w"); out:write(text); out:close()
        {dump(f"{d}/ref.h5", "frame", "f")}
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NXLUA_", "LUA_"))}
    r = subprocess.run([BIN, "-e", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    with h5py.File(d / "ref.h5", "r") as h:
        ref = h["frame"][()]
    text = (d / "header.txt").read_text()
    cbf = fabio.cbfimage.CbfImage(data=ref, header={"_array_data.header_convention": "PILATUS_1.2",
                                                    "_array_data.header_contents": text})
    cbf.write(str(d / "fabio.cbf"))
    fabio.tifimage.TifImage(data=ref).write(str(d / "fabio.tif"))
    return d, ref, text


def test_synthetic_frame_is_a_realistic_pilatus(frames):
    _, ref, text = frames
    assert ref.shape == SHAPE and ref.dtype == np.int32
    gaps = np.zeros(ref.shape, bool)
    for k in range(1, (ref.shape[1] + 7) // 494):
        gaps[:, k * 494 - 7:k * 494] = True
    for k in range(1, (ref.shape[0] + 17) // 212):
        gaps[k * 212 - 17:k * 212, :] = True
    assert (ref[gaps] == -1).all() and (ref[~gaps] >= -2).all() and not (ref[~gaps] == -1).any()
    modules = ref.size / (1679 * 1475)
    assert 5 <= (ref == -2).sum() <= 150                       # dead pixels
    assert ((ref >= 1048500) & (ref <= 1048574)).sum() >= 3    # hot pixels at the cutoff
    assert ref.max() <= 1048574
    assert (ref > 1000).sum() > 100 * modules                   # Bragg spots
    y, x = int(float(BEAM[1])), int(float(BEAM[0]))
    centre = ref[max(0, y - 40):y + 40, x - 40:x + 40]
    corner = ref[:60, :60]
    assert np.median(centre[centre >= 0]) > 1.5 * np.median(corner[corner >= 0])  # background falls off
    for key in ["Detector:", "Pixel_size", "Exposure_time", "Exposure_period", "Wavelength", "Detector_distance",
                "Beam_xy", "Start_angle", "Angle_increment", "Flux", "Filter_transmission", "Threshold_setting",
                "Count_cutoff", "Alpha", "Kappa", "Phi", "Chi", "Omega", "Oscillation_axis", "N_oscillations"]:
        assert f"# {key}" in text, key


def test_fabio_reads_what_nxlua_writes(frames):
    d, ref, _ = frames
    cbf = fabio.open(str(d / "ours.cbf"))
    assert np.array_equal(cbf.data, ref)
    assert cbf.header["X-Binary-Size-Fastest-Dimension"] == str(SHAPE[1])
    assert "Exposure_time 0.0995000 s" in cbf.header["_array_data.header_contents"]
    tif = fabio.open(str(d / "ours.tif"))
    assert np.array_equal(tif.data, ref) and tif.data.dtype == np.int32


@pytest.mark.parametrize("name", ["fabio.cbf", "fabio.tif", "ours.cbf", "ours.tif"])
def test_nxlua_equals_fabio_element_by_element(nxlua, frames, name, tmp_path):
    d, ref, _ = frames
    run_ok(nxlua, f'local f = detector.read("{d}/{name}")\n' + dump(tmp_path / "out.h5", "frame", "f"))
    with h5py.File(tmp_path / "out.h5", "r") as h:
        ours = h["frame"][()]
    theirs = fabio.open(str(d / name)).data
    assert ours.dtype == theirs.dtype == np.int32
    assert np.array_equal(ours, theirs) and np.array_equal(ours, ref)


def test_cbflib_decoder_agrees_on_fabio_files(nxlua, frames):
    d, _, _ = frames
    out = run_ok(nxlua, f"""
        local a, ha = detector.read("{d}/fabio.cbf")
        local b, hb = detector.read("{d}/fabio.cbf", {{decoder = "cbflib", md5 = true}})
        local c = detector.read("{d}/fabio.cbf", {{decoder = "native", md5 = true}})
        print(ha.decoder, hb.decoder, hb.compression, (a - b):abs():max(), (a - c):abs():max())
    """)
    assert out.split() == ["native", "cbflib", "byte_offset", "0", "0"]


def test_fabio_extreme_values(nxlua, tmp_path):
    """Every byte-offset escape, written by fabio, for each integer type fabio writes."""
    rng = np.random.default_rng(3)
    for dtype in [np.int32, np.uint16, np.int16, np.uint8, np.int8]:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, int(info.max) + 1, size=(37, 53), dtype=np.int64).astype(dtype)
        a.flat[::7] = info.max
        a.flat[1::7] = info.min
        path = tmp_path / f"x_{np.dtype(dtype).name}.cbf"
        fabio.cbfimage.CbfImage(data=a).write(str(path))
        run_ok(nxlua, f'local f = detector.read("{path}")\n' + dump(tmp_path / "x.h5", "x", "f"))
        with h5py.File(tmp_path / "x.h5", "r") as h:
            ours = h["x"][()]
        assert ours.dtype == a.dtype and np.array_equal(ours, a), dtype


def test_real_cbflib_files(nxlua, tmp_path):
    fit2d = SHARED / "fit2d_data.cbf"
    if not fit2d.exists():
        pytest.skip(f"no {SHARED}")
    # fabio cannot read either file (no MIME dimensions; no binary data): compare with the bytes
    with pytest.raises(Exception):
        fabio.open(str(fit2d))
    out = run_ok(nxlua, f"""
        local f, h = detector.read("{fit2d}", {{md5 = true}})
        print(h.decoder, h.compression, f.dtype, f.shape[1], f.shape[2])
    """ + dump(tmp_path / "f.h5", "f", 'detector.read("%s")' % fit2d))
    assert out.split() == ["cbflib", "none", "int32", "236", "263"]
    raw = fit2d.read_bytes()
    start = raw.index(b"\x0c\x1a\x04\xd5") + 4
    expected = np.frombuffer(raw[start:start + 236 * 263 * 4], "<i4").reshape(236, 263)
    with h5py.File(tmp_path / "f.h5", "r") as h:
        assert np.array_equal(h["f"][()], expected)
    err = lua_error(nxlua, f'detector.read("{SHARED / "fel_test1.cbf"}")')
    assert f"{SHARED / 'fel_test1.cbf'}: no readable binary image in _array_data.data (64 rows" in err


def test_header_table(nxlua, frames):
    d, _, _ = frames
    out = run_ok(nxlua, f"""
        local _, h = detector.read("{d}/ours.cbf")
        print(h.format, h.compression, h.decoder, h.convention)
        print(h.exposure_time, h.units.exposure_time, math.type(h.count_cutoff), h.count_cutoff)
        print(h.beam_xy[1], h.beam_xy[2], h.units.beam_xy, h.pixel_size[1], h.units.pixel_size)
        print(h.detector, "|", h.time, "|", h.oscillation_axis, "|", h.gain_setting)
        print(h.wavelength, h.units.wavelength, h.threshold_setting, h.units.threshold_setting, h.start_angle, h.units.start_angle)
        print(h.mime["X-Binary-Size-Fastest-Dimension"], h.mime["X-Binary-Element-Type"])
        print(h.text:match("^# Detector"), select(2, h.text:gsub("\\n", "")))
        local t = detector.header("{d}/ours.tif")
        print(t.format, t.decoder, t.pages, t.exposure_time, t.beam_xy[2])
        local p = detector.parse_header("# Exposure_time 2 s\\n# Odd_key some text")
        print(p.exposure_time, p.units.exposure_time, p.odd_key)
    """).splitlines()
    assert out == [
        "cbf\tbyte_offset\tnative\tPILATUS_1.2",
        "0.0995\ts\tinteger\t1048574",
        f"{BEAM[0]}\t{BEAM[1]}\tpixels\t0.000172\tm",
        f"{MODEL}, 24-0111\t|\t2024-03-01T12:00:01.000\t|\tX, CW\t|\thigh gain (vrf = -0.150)",
        "0.9793\tA\t6344.0\teV\t0.1\tdeg",
        f"{SHAPE[1]}\tsigned 32-bit integer",
        "# Detector\t35",
        f"tiff\tlibtiff\t1\t0.0995\t{BEAM[1]}",
        "2.0\ts\tsome text",
    ]


def test_tiff_pages_tiles_and_types(nxlua, tmp_path):
    out = run_ok(nxlua, f"""
        local a = array.arange(0, 3 * 40 * 50, 1, "int32"):reshape({{3, 40, 50}}) - 1000
        detector.write("{tmp_path}/p.tif", a, "# Exposure_time 1 s", {{tile = {{16, 32}}}})
        local p1, h = detector.read("{tmp_path}/p.tif", {{page = 1}})
        print(h.pages, h.page, p1.shape[1], p1.shape[2], (p1 - a[1]):abs():max())
        local all = detector.read("{tmp_path}/p.tif", {{page = "all"}})
        print(all.shape[1], (all - a):abs():max())
        for _, dt in ipairs({{"uint8", "int16", "uint16", "uint32", "float32", "float64"}}) do
          local b = (array.arange(0, 600) * 3):astype(dt):reshape({{20, 30}})
          detector.write("{tmp_path}/t.tif", b, nil, {{rows_per_strip = 7}})
          local c = detector.read("{tmp_path}/t.tif")
          io.write(c.dtype, " ", tostring((c:astype("float64") - b:astype("float64")):abs():max()), " ")
        end
        print()
    """).splitlines()
    assert out[0] == "3\t1\t40\t50\t0"
    assert out[1] == "3\t0"
    assert out[2].split() == ["uint8", "0.0", "int16", "0.0", "uint16", "0.0", "uint32", "0.0",
                              "float32", "0.0", "float64", "0.0"]


def cbf_bytes(nxlua, tmp_path):
    run_ok(nxlua, f"""
        local a = array.arange(0, 2000, 1, "int32"):reshape({{40, 50}}) * 977 % 70001 - 30000
        detector.write("{tmp_path}/good.cbf", a, "# Exposure_time 1 s")
    """)
    return (tmp_path / "good.cbf").read_bytes()


def tiff_with(sample_format, bits=32, spp=1):
    """A minimal little-endian TIFF (8 x 4 pixels) with the given pixel description."""
    w, h = 8, 4
    data = b"\x01" * (w * h * bits // 8 * spp)
    tags = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 1, bits), (259, 3, 1, 1), (262, 3, 1, 1),
            (273, 4, 1, 0), (277, 3, 1, spp), (278, 3, 1, h), (279, 4, 1, len(data)), (339, 3, 1, sample_format)]
    ifd_offset = 8 + len(data)
    out = b"II*\x00" + struct.pack("<I", ifd_offset) + data + struct.pack("<H", len(tags))
    for tag, typ, count, value in tags:
        if tag == 273:
            value = 8
        out += struct.pack("<HHI", tag, typ, count) + (struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value))
    return out + struct.pack("<I", 0)


def test_faults_raise_errors_naming_the_file(nxlua, tmp_path):
    good = cbf_bytes(nxlua, tmp_path)
    start = good.index(b"\x0c\x1a\x04\xd5") + 4
    size = int(re.search(rb"X-Binary-Size: (\d+)", good).group(1))
    cases = {
        "truncated.cbf": (good[:start + 50], "truncated: X-Binary-Size says"),
        "head_only.cbf": (good[:300], "truncated: the binary section's MIME header does not end"),
        "no_data.cbf": (good[:start - 4], "truncated: no binary data"),
        "small_size.cbf": (good.replace(b"X-Binary-Size: %d" % size, b"X-Binary-Size: %d" % (size // 3)),
                           "corrupt or truncated byte-offset data"),
        "type.cbf": (good.replace(b"signed 32-bit integer", b"signed 48-bit integer"),
                     'unknown X-Binary-Element-Type "signed 48-bit integer"'),
        "compression.cbf": (good.replace(b"x-CBF_BYTE_OFFSET", b"x-CBF_MYSTERY"), "unknown compression x-cbf_mystery"),
        "count.cbf": (good.replace(b"Number-of-Elements: 2000", b"Number-of-Elements: 1999"),
                      "X-Binary-Number-of-Elements is 1999"),
        "notes.txt": (b"hello, world\n", 'not a CBF or TIFF file (it starts with "hello, world.")'),
        "complex.tif": (tiff_with(5), "unsupported pixel type on page 0: 32-bit complex integer"),
        "rgb.tif": (tiff_with(1, 8, 3), "page 0 has 3 samples per pixel"),
        "cut.tif": (tiff_with(1)[:40], ""),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        err = lua_error(nxlua, f'detector.read("{tmp_path / name}")')
        assert f"{tmp_path / name}: {message}" in err, (name, err)
    corrupt = bytearray(good)
    corrupt[start + 100:start + 140] = b"\x80" * 40
    (tmp_path / "corrupt.cbf").write_bytes(bytes(corrupt))
    err = lua_error(nxlua, f'detector.read("{tmp_path}/corrupt.cbf", {{md5 = true}})')
    assert f"{tmp_path}/corrupt.cbf: Content-MD5 mismatch: the header says" in err
    err = lua_error(nxlua, f'detector.read("{tmp_path}/missing.cbf")')
    assert f"{tmp_path}/missing.cbf: cannot open: No such file or directory" in err
    # the same errors are catchable, and the state goes on
    out = run_ok(nxlua, f"""
        for i = 1, 200 do assert(not pcall(detector.read, "{tmp_path}/truncated.cbf")) end
        print(select(2, pcall(detector.read, "{tmp_path}/small_size.cbf")):match("hold only %d+ of the 2000 elements"))
    """)
    assert out.strip().startswith("hold only")


def test_misuse(nxlua, tmp_path):
    assert "bad argument #1 to 'read' (string expected, got no value)" in lua_error(nxlua, "detector.read()")
    assert 'decoder must be one of "auto", "native", "cbflib", got "fast"' in lua_error(
        nxlua, 'detector.read("x.cbf", {decoder = "fast"})')
    assert "page must be a 0-based integer or \"all\"" in lua_error(nxlua, 'detector.read("x.tif", {page = 1.5})')
    assert "cannot tell the format from the name" in lua_error(
        nxlua, f'detector.write("{tmp_path}/x.dat", array.zeros({{2, 2}}, "int32"))')
    assert "byte-offset CBF holds integers, got float64" in lua_error(
        nxlua, f'detector.write("{tmp_path}/x.cbf", array.zeros({{2, 2}}))')
    assert "a CBF frame must be 2-D" in lua_error(nxlua, f'detector.write("{tmp_path}/x.cbf", array.zeros({{4}}, "int32"))')
    out = run_ok(nxlua, 'help(detector.read); help(detector)')
    assert "detector.read(path [, options]) -> frame, header" in out and "detector.synthetic" in out


def doc_blocks():
    text = (ROOT / "docs" / "detector.md").read_text()
    return re.findall(r"```lua\n(.*?)```", text, re.S)


@pytest.mark.skipif(SANITIZED, reason="the docs make Pilatus 2M frames: minutes in the unoptimised "
                    "sanitized build; the release run checks the examples")
def test_docs_examples_print_what_they_say(nxlua, tmp_path):
    """The blocks of docs/detector.md run in order, in one folder, printing their --> lines."""
    blocks = doc_blocks()
    assert len(blocks) >= 4
    for block in blocks:
        expected = [m.group(1) for m in re.finditer(r"--> ?(.*)$", block, re.M)]
        r = nxlua("-e", block, cwd=tmp_path)
        assert r.returncode == 0, (block, r.stderr)
        assert r.stdout.splitlines() == expected, block
