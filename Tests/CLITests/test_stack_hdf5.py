"""nxlua stack / detector.stack with HDF5 inputs and metadata from outside the frames:
Eiger master files with external data files (bitshuffle+LZ4 chunks copied as stored),
areaDetector files (NDAttributes per frame, gzip chunks decoded and re-encoded), any 3-D
dataset named FILE:/path; --meta and --meta-file into NXsample, NXinstrument, NXuser.
Files are written here by h5py + hdf5plugin and the stacks read back by them."""
import os
import pathlib
import subprocess
import sys

import h5py
import hdf5plugin  # scripts/requirements-peers.txt: bitshuffle+LZ4 for h5py
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("NXLUA_BIN", str(ROOT / ".build" / "release" / "nxlua"))


def run(*args, timeout=300):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)


def eiger_series(folder, files=2, per_file=5, shape=(48, 64), dtype="int32", nelems=0):
    """A Dectris-style series: master with /entry/data/data_00000k external links, data files
    with (n, Y, X) bitshuffle+LZ4 chunks of one frame, detector metadata and pixel mask."""
    rng = np.random.default_rng(3)
    frames = rng.poisson(20, size=(files * per_file,) + shape).astype(dtype)
    frames[:, 5, 7] = 9999
    master = folder / "series_master.h5"
    with h5py.File(master, "w") as m:
        entry = m.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        for k in range(files):
            name = f"series_data_{k + 1:06d}.h5"
            with h5py.File(folder / name, "w") as d:
                ds = d.create_dataset("entry/data/data", data=frames[k * per_file:(k + 1) * per_file],
                                      chunks=(1,) + shape, **hdf5plugin.Bitshuffle(nelems=nelems, cname="lz4"))
                ds.attrs["image_nr_low"] = np.int32(k * per_file + 1)
                ds.attrs["image_nr_high"] = np.int32((k + 1) * per_file)
            data[f"data_{k + 1:06d}"] = h5py.ExternalLink(name, "/entry/data/data")
        det = entry.create_group("instrument/detector")
        det["description"] = "Dectris EIGER2 X 1M"
        for name, value, units in [("detector_distance", 0.25, "m"), ("count_time", 0.099, "s"), ("frame_time", 0.1, "s"),
                                   ("beam_center_x", 31.5, "pixel"), ("beam_center_y", 22.25, "pixel"),
                                   ("x_pixel_size", 75e-6, "m"), ("y_pixel_size", 75e-6, "m"),
                                   ("threshold_energy", 6000.0, "eV"), ("sensor_thickness", 450e-6, "m")]:
            det[name] = value
            det[name].attrs["units"] = units
        det["sensor_material"] = "Si"
        mask = np.zeros(shape, dtype="uint32")
        mask[0, :] = 1
        mask[10, 12] = 8
        det["detectorSpecific/pixel_mask"] = mask
        det["detectorSpecific/countrate_correction_count_cutoff"] = 123456
        entry["instrument/beam/incident_wavelength"] = 0.9537
        entry["instrument/beam/incident_wavelength"].attrs["units"] = "angstrom"
        entry["sample/goniometer/omega"] = np.arange(files * per_file) * 0.1 + 5
        entry["sample/goniometer/omega"].attrs["units"] = "degree"
    return master, frames, mask


def test_eiger_master_copies_chunks_as_stored(tmp_path):
    # nelems=2048: a block size nxlua's encoder would not choose, so equal chunk bytes
    # prove the chunks were copied, not re-encoded
    master, frames, mask = eiger_series(tmp_path, nelems=2048)
    out = tmp_path / "stack.nxs"
    r = run("stack", str(master), "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as s, h5py.File(tmp_path / "series_data_000002.h5", "r") as src:
        data = s["entry/instrument/detector/data"]
        np.testing.assert_array_equal(data[()], frames)
        assert data.chunks == (1, 48, 64) and data.id.get_create_plist().get_filter(0)[0] == 32008
        assert data.id.read_direct_chunk((7, 0, 0))[1] == src["entry/data/data"].id.read_direct_chunk((2, 0, 0))[1]
        np.testing.assert_array_equal(s["entry/instrument/detector/pixel_mask"][()], mask)
        np.testing.assert_array_equal(s["entry/instrument/NDAttributes/frame_number"][()], np.arange(1, 11))
        np.testing.assert_allclose(s["entry/instrument/NDAttributes/omega"][()], np.arange(10) * 0.1 + 5)
        assert s["entry/instrument/NDAttributes/omega"].attrs["units"] == "degree"
        det = s["entry/instrument/detector"]
        assert det["distance"][()] == 0.25 and det["distance"].attrs["units"] == "m"
        assert det["beam_center_x"][()] == 31.5 and det["x_pixel_size"][()] == 75e-6
        assert det["count_time"][()] == 0.099 and det["sensor_material"][()].decode() == "Si"
        assert det["saturation_value"][()] == 123456 and det["description"][()].decode() == "Dectris EIGER2 X 1M"
        assert s["entry/instrument/monochromator/wavelength"][()] == 0.9537
        assert s["entry/sample/omega"][3] == pytest.approx(5.3)
        names = [n.decode() for n in s["entry/stacking/source_file"][()]]
        assert names[0] == "series_master.h5[0]" and names[9] == "series_master.h5[9]"
        assert list(s["entry/stacking/frame_status"][()]) == [1] * 10


def test_eiger_uint32_and_resume(tmp_path):
    master, frames, _ = eiger_series(tmp_path, dtype="uint32")
    out = tmp_path / "stack.nxs"
    r = run("stack", str(master), "--out", str(out), "--quiet", "--frames", "10")
    assert r.returncode == 0, r.stderr
    r = run("stack", str(master), "--out", str(out), "--quiet", "--frames", "10")
    assert r.returncode == 0 and "resuming: 10 frames already stored" in r.stderr, r.stderr
    with h5py.File(out, "r") as s:
        np.testing.assert_array_equal(s["entry/instrument/detector/data"][()], frames)


def test_area_detector_file_reencoded(tmp_path):
    rng = np.random.default_rng(8)
    frames = rng.integers(0, 5000, size=(6, 32, 40)).astype("int32")
    path = tmp_path / "ad_0001.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("entry/instrument/detector/data", data=frames, chunks=(1, 32, 40), compression="gzip")
        f["entry/instrument/NDAttributes/NDArrayUniqueId"] = np.arange(100, 106, dtype="int32")
        t = f.create_dataset("entry/instrument/NDAttributes/Temperature", data=np.linspace(290, 295, 6))
        t.attrs["units"] = "K"
    out = tmp_path / "ad.nxs"
    r = run("stack", str(path), "--out", str(out), "--quiet", "--compression", "bslz4")
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as s:
        np.testing.assert_array_equal(s["entry/instrument/detector/data"][()], frames)
        np.testing.assert_array_equal(s["entry/instrument/NDAttributes/NDArrayUniqueId"][()], np.arange(100, 106))
        np.testing.assert_allclose(s["entry/instrument/NDAttributes/Temperature"][()], np.linspace(290, 295, 6))
        assert s["entry/instrument/NDAttributes/Temperature"].attrs["units"] == "K"


def test_any_dataset_by_path_and_lua_stacker(tmp_path):
    frames = np.arange(4 * 16 * 16, dtype="float32").reshape(4, 16, 16)
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as f:
        f["measurement/frames"] = frames
    out = tmp_path / "any.nxs"
    code = f"""
    local s = detector.stack{{files = {{"{path}:/measurement/frames"}}, out = "{out}", quiet = true,
                               meta = {{"sample.name=LaB6", "sample.temperature=300K"}}}}
    print(s.stored, s.frames)
    """
    r = run("-e", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["4", "4"]
    with h5py.File(out, "r") as s:
        np.testing.assert_array_equal(s["entry/instrument/detector/data"][()], frames)
        assert s["entry/sample/name"][()].decode() == "LaB6"
        assert s["entry/sample/temperature"][()] == 300 and s["entry/sample/temperature"].attrs["units"] == "K"
        assert s["entry/sample"].attrs["NX_class"] == "NXsample"


def test_hdf5_input_faults(tmp_path):
    master, _, _ = eiger_series(tmp_path)
    os.unlink(tmp_path / "series_data_000002.h5")
    r = run("stack", str(master), "--out", str(tmp_path / "x.nxs"), "--quiet")
    assert r.returncode == 1 and "/entry/data/data_000002 cannot be opened" in r.stderr, r.stderr
    flat = tmp_path / "flat.h5"
    with h5py.File(flat, "w") as f:
        f["v"] = np.arange(10)
    r = run("stack", f"{flat}:/v", "--out", str(tmp_path / "y.nxs"), "--quiet")
    assert r.returncode == 1 and "a dataset of shape (10,) (frames, rows, columns) expected" in r.stderr, r.stderr
    r = run("stack", str(flat), "--out", str(tmp_path / "y.nxs"), "--quiet")
    assert r.returncode == 1 and "no frames found" in r.stderr, r.stderr
    r = run("stack", f"{flat}:/nothing", "--out", str(tmp_path / "y.nxs"), "--quiet")
    assert r.returncode == 1 and "no dataset /nothing" in r.stderr, r.stderr
    cbf = tmp_path / "a_00001.cbf"
    cbf.write_text("x")
    r = run("stack", str(flat), str(cbf), "--out", str(tmp_path / "y.nxs"), "--quiet")
    assert r.returncode == 1 and "give HDF5 files or frame files, not both" in r.stderr, r.stderr
    assert "AddressSanitizer" not in r.stderr


def test_meta_and_meta_file(tmp_path):
    frames = np.ones((2, 8, 8), dtype="int32")
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f["entry/data/data"] = frames
    toml = tmp_path / "run.toml"
    toml.write_text("""# the run's metadata
[sample]
name = "not this"   # --meta wins
temperature = 300
temperature_units = "K"
chemical_formula = "LaB6"

[instrument.source]
current = "101.5 mA"
name = "CHESS"

[user]
name = "Ray Osborn"
[experiment]
identifier = "2026-3-1234"
""")
    out = tmp_path / "m.nxs"
    r = run("stack", str(path), "--out", str(out), "--quiet", "--meta-file", str(toml),
            "--meta", "sample.name=LaB6 660c", "--meta", "sample.distance=2.5 mm", "--meta", "entry.title=powder")
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as s:
        e = s["entry"]
        assert e["sample/name"][()].decode() == "LaB6 660c"
        assert e["sample/temperature"][()] == 300 and e["sample/temperature"].attrs["units"] == "K"
        assert e["sample/chemical_formula"][()].decode() == "LaB6"
        assert e["sample/distance"][()] == 2.5 and e["sample/distance"].attrs["units"] == "mm"
        assert e["instrument/source"].attrs["NX_class"] == "NXsource"
        assert e["instrument/source/current"][()] == 101.5 and e["instrument/source/current"].attrs["units"] == "mA"
        assert e["user"].attrs["NX_class"] == "NXuser" and e["user/name"][()].decode() == "Ray Osborn"
        assert e["experiment_identifier"][()].decode() == "2026-3-1234"
        assert e["title"][()].decode() == "powder"
    bad = tmp_path / "bad.toml"
    bad.write_text("[sample]\nname = LaB6\n")
    r = run("stack", str(path), "--out", str(tmp_path / "n.nxs"), "--meta-file", str(bad))
    assert r.returncode == 1 and f"{bad}: line 2: cannot read the value LaB6" in r.stderr, r.stderr
    r = run("stack", str(path), "--out", str(tmp_path / "n.nxs"), "--meta", "temperature=300K")
    assert r.returncode == 1 and "'temperature' is not a dotted NeXus name" in r.stderr, r.stderr
    r = run("stack", str(path), "--out", str(tmp_path / "n.nxs"), "--meta", "detector.x=1")
    assert r.returncode == 1 and "must start with sample, instrument, user, experiment or entry" in r.stderr, r.stderr


def test_run_start_metadata_fills_the_sample(tmp_path):
    """`nxlua trigger run.start --run UID sample=LaB6 temperature=300K` before the stacker
    starts: the stack of that run (--journal, --run) has them in NXsample, --meta wins."""
    frames = np.ones((2, 8, 8), dtype="int32")
    path = tmp_path / "r.h5"
    with h5py.File(path, "w") as f:
        f["entry/data/data"] = frames
    journal = tmp_path / "j.sqlite"
    r = run("trigger", "run.start", "--run", "run-42", "--journal", str(journal), "sample=LaB6",
            "temperature=300K", "pressure=1.5 bar", "instrument.source.current=100mA", "scan_id=7",
            "chemical_formula=not this")
    assert r.returncode == 0, r.stderr
    # another run's run.start is not taken
    r = run("trigger", "run.start", "--run", "run-41", "--journal", str(journal), "sample=Si")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "r.nxs"
    r = run("stack", str(path), "--out", str(out), "--quiet", "--journal", str(journal), "--run", "run-42",
            "--meta", "sample.chemical_formula=LaB6")
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as s:
        sample = s["entry/sample"]
        assert sample.attrs["NX_class"] in (b"NXsample", "NXsample")
        assert sample["name"][()].decode() == "LaB6"
        assert sample["temperature"][()] == 300 and sample["temperature"].attrs["units"] == "K"
        assert sample["pressure"][()] == 1.5 and sample["pressure"].attrs["units"] == "bar"
        assert sample["chemical_formula"][()].decode() == "LaB6"
        assert s["entry/instrument/source/current"][()] == 100
        assert "scan_id" not in sample
    # without --run (a new uid), nothing of run-42
    out2 = tmp_path / "r2.nxs"
    r = run("stack", str(path), "--out", str(out2), "--quiet", "--journal", str(journal))
    assert r.returncode == 0, r.stderr
    with h5py.File(out2, "r") as s:
        assert "name" not in s["entry"].get("sample", {})


def test_logs_become_nxlog_and_per_frame_values(tmp_path):
    """--log sample.temperature=FILE.csv: an NXlog (time from its start, value with units)
    in NXsample, and the temperature at each frame's time stamp, as numpy.interp gives it."""
    from datetime import datetime, timezone
    folder = tmp_path / "frames"
    folder.mkdir()
    code = f"""
    for n = 1, 6 do
      local f, h = detector.synthetic{{seed = n, frame = n, modules = {{1, 1}}, spots = 5}}
      detector.write(string.format("{folder}/scan_%05d.cbf", n), f, h)
    end"""
    r = run("-e", code)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "log.nxs"
    # the frames' time stamps, from a first stack
    r = run("stack", *sorted(map(str, folder.glob("*.cbf"))), "--out", str(tmp_path / "first.nxs"), "--quiet")
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "first.nxs", "r") as s:
        stamps = [t.decode() for t in s["entry/instrument/NDAttributes/time"][:]]
    frame_t = np.array([datetime.fromisoformat(t).replace(tzinfo=timezone.utc).timestamp() for t in stamps])
    t0 = frame_t[0] - 2.5
    log_t = t0 + np.array([0, 1.7, 3.1, 4.0, 6.2, 9.0])
    log_v = np.array([300.0, 301.5, 299.0, 305.25, 310.0, 311.0])
    csv = tmp_path / "temperature.csv"
    csv.write_text("time,temperature (K)\n" + "".join(f"{t:.6f},{v}\n" for t, v in zip(log_t, log_v)))
    current = tmp_path / "current.csv"
    iso = [datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] for t in (frame_t[0] - 10, frame_t[-1] + 10)]
    current.write_text(f"# ring current\n{iso[0]}\t100.0\n{iso[1]}\t98.0\n")
    r = run("stack", *sorted(map(str, folder.glob("*.cbf"))), "--out", str(out), "--quiet",
            "--log", f"temperature={csv}", "--log", f"instrument.source.current={current}")
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as s:
        log = s["entry/sample/temperature_log"]
        assert log.attrs["NX_class"] in (b"NXlog", "NXlog")
        start = datetime.fromisoformat(log["time"].attrs["start"]).replace(tzinfo=timezone.utc).timestamp()
        np.testing.assert_allclose(log["time"][:] + start, log_t, atol=1e-6)
        np.testing.assert_array_equal(log["value"][:], log_v)
        assert log["value"].attrs["units"] == "K" and log["time"].attrs["units"] == "s"
        per_frame = s["entry/sample/temperature"][:]
        np.testing.assert_allclose(per_frame, np.interp(frame_t, log_t, log_v), rtol=1e-12)
        assert s["entry/sample/temperature"].attrs["units"] == "K"
        cur = s["entry/instrument/source/current"][:]
        ct = np.array([datetime.fromisoformat(t).replace(tzinfo=timezone.utc).timestamp() for t in iso])
        np.testing.assert_allclose(cur, np.interp(frame_t, ct, [100.0, 98.0]), rtol=1e-9)
        assert s["entry/instrument/source/current_log"].attrs["NX_class"] in (b"NXlog", "NXlog")
    # a log that is not one
    bad = tmp_path / "bad.csv"
    bad.write_text("time,value\n1,2\nabc,def\n")
    r = run("stack", str(folder / "scan_00001.cbf"), "--out", str(tmp_path / "bad.nxs"), "--quiet", "--log", f"sample.temperature={bad}")
    assert r.returncode != 0 and str(bad) in r.stderr and "line 3" in r.stderr


SPEC_FILE = """#F scan.spec
#E {epoch}
#D Sat Dec 05 10:00:00 2026
#C sample: LaB6 powder, capillary 0.3 mm
#O0 Two Theta  th  chi  phi
#o0 tth th chi phi

#S 12  ascan  th 0 1 5 1
#D Sat Dec 05 10:00:00 2026
#C temperature = 20 degC
#P0 30.5 15.25 -90 0
#N 4
#L th  Epoch  Temp  I0
{rows}
#S 13  timescan 1
#D Sat Dec 05 10:05:00 2026
#P0 30.5 15.25 -90 0
#N 2
#L Epoch  I0
1 2
"""


def test_spec_scan_fills_the_metadata_and_its_columns_become_logs(tmp_path):
    """--spec FILE:SCAN: the sample's name and temperature by the catalog's rules, the scan's
    title, the motors' positions; --log NAME=FILE:SCAN:COLUMN: a column timed by the Epoch
    column (seconds from #E) as an NXlog, interpolated at each frame's time stamp."""
    from datetime import datetime, timezone
    folder = tmp_path / "frames"
    folder.mkdir()
    r = run("-e", f"""
    for n = 1, 4 do
      local f, h = detector.synthetic{{seed = n, frame = n, modules = {{1, 1}}, spots = 3}}
      detector.write(string.format("{folder}/scan_%05d.cbf", n), f, h)
    end""")
    assert r.returncode == 0, r.stderr
    frames = sorted(map(str, folder.glob("*.cbf")))
    r = run("stack", *frames, "--out", str(tmp_path / "first.nxs"), "--quiet")
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "first.nxs", "r") as s:
        stamps = [t.decode() for t in s["entry/instrument/NDAttributes/time"][:]]
    frame_t = np.array([datetime.fromisoformat(t).replace(tzinfo=timezone.utc).timestamp() for t in stamps])
    epoch = int(frame_t[0]) - 100
    rel = frame_t[0] - epoch + np.array([-3.0, -1.0, 0.5, 2.0, 5.0])
    temps = np.array([290.0, 292.5, 291.0, 295.0, 299.0])
    rows = "\n".join(f"{i * 0.25} {t:.6f} {v} {1000 + i}" for i, (t, v) in enumerate(zip(rel, temps)))
    spec = tmp_path / "scan.spec"
    spec.write_text(SPEC_FILE.format(epoch=epoch, rows=rows))
    out = tmp_path / "s.nxs"
    r = run("stack", *frames, "--out", str(out), "--quiet", "--spec", f"{spec}:12",
            "--meta", "instrument.positioners.chi=-89.5")
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as s:
        e = s["entry"]
        assert e["sample/name"][()].decode() == "LaB6 powder"
        # a Temp column wins over the comment, as in the catalog (columns are in kelvin)
        assert e["sample/temperature"][()] == pytest.approx(temps.mean()) and e["sample/temperature"].attrs["units"] == "K"
        assert e["title"][()].decode() == "12  ascan  th 0 1 5 1"
        pos = e["instrument/positioners"]
        assert pos["Two_Theta"][()] == 30.5 and pos["th"][()] == 15.25 and pos["phi"][()] == 0
        assert pos["chi"][()] == -89.5  # --meta wins
    # a column as a log: per frame, it takes the place of --spec's mean
    r = run("stack", *frames, "--out", str(tmp_path / "log.nxs"), "--quiet", "--spec", f"{spec}:12",
            "--log", f"temperature={spec}:12:Temp")
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "log.nxs", "r") as s:
        e = s["entry"]
        log = e["sample/temperature_log"]
        start = datetime.fromisoformat(log["time"].attrs["start"]).timestamp()
        np.testing.assert_allclose(log["time"][:] + start, epoch + rel, atol=1e-6)
        np.testing.assert_array_equal(log["value"][:], temps)
        assert "(SPEC scan 12)" in log.attrs["source"]
        np.testing.assert_allclose(e["sample/temperature"][:], np.interp(frame_t, epoch + rel, temps), rtol=1e-9)
    # the comment's temperature with its own units when there is no column
    spec13 = tmp_path / "c.spec"
    spec13.write_text(SPEC_FILE.format(epoch=epoch, rows=rows).replace("Temp", "Tx"))
    r = run("stack", *frames, "--out", str(tmp_path / "c.nxs"), "--quiet", "--spec", f"{spec13}:12")
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "c.nxs", "r") as s:
        assert s["entry/sample/temperature"][()] == 20 and s["entry/sample/temperature"].attrs["units"] == "degC"
    # faults name the file and what was expected
    for args, words in [(["--spec", f"{spec}:99"], ["has no scan 99", "12, 13"]),
                        (["--spec", str(tmp_path / "none.spec") + ":1"], ["none.spec"]),
                        (["--log", f"temperature={spec}:12:Nope"], ["no column 'Nope'", "Epoch, Temp"])]:
        r = run("stack", *frames, "--out", str(tmp_path / "bad.nxs"), "--quiet", *args)
        assert r.returncode != 0 and all(w in r.stderr for w in words), (args, r.stderr)
    # a scan without an Epoch column cannot be a log
    spec2 = tmp_path / "noepoch.spec"
    spec2.write_text(SPEC_FILE.format(epoch=epoch, rows=rows).replace("Epoch", "Seconds"))
    r = run("stack", *frames, "--out", str(tmp_path / "bad2.nxs"), "--quiet", "--log", f"temperature={spec2}:12:Temp")
    assert r.returncode != 0 and "no Epoch column" in r.stderr, r.stderr


# A detector process writing HDF5 files into a watched folder, as areaDetector's NDFileHDF5
# in single mode (one frame per file, (rows, columns), NDAttributes of one value, a
# temporary name renamed when closed) and as an Eiger data file (several frames, numbered
# by image_nr_low), one of them written slowly in place: a polling stacker sees it while
# h5py still holds it open.
HDF5_DETECTOR = """
import os, sys, time, h5py, hdf5plugin, numpy as np
folder, slow = sys.argv[1], float(sys.argv[2])
rng = np.random.default_rng(5)
frames = rng.poisson(30, size=(7, 40, 56)).astype("int32")
np.save(os.path.join(folder, "..", "truth.npy"), frames)
for n in range(1, 5):
    tmp = os.path.join(folder, f"scan_{n:05d}.h5.tmp")
    with h5py.File(tmp, "w") as f:
        f["entry/instrument/detector/data"] = frames[n - 1]
        f["entry/instrument/NDAttributes/temperature"] = np.array([290.0 + n])
    os.rename(tmp, os.path.join(folder, f"scan_{n:05d}.h5"))
    time.sleep(0.1)
with h5py.File(os.path.join(folder, "series_data_000002.h5"), "w") as f:
    d = f.create_dataset("entry/data/data", shape=(3, 40, 56), dtype="int32", chunks=(1, 40, 56),
                         **hdf5plugin.Bitshuffle(cname="lz4"))
    d.attrs["image_nr_low"] = np.int32(5)
    f.flush()
    time.sleep(slow)
    d[...] = frames[4:]
print("done", flush=True)
"""


@pytest.mark.parametrize("poll", [False, True])
def test_watch_follows_hdf5_files_as_their_writers_close_them(tmp_path, poll):
    """--watch DIR --pattern '*.h5': each file is stacked once its writer has closed it
    (inotify) or once it can be opened (polling: h5py's lock refuses a reader meanwhile);
    single-frame files take the number in their name, Eiger data files their image_nr_low;
    the temporary names areaDetector writes under are not matched."""
    folder = tmp_path / "watched"
    folder.mkdir()
    out = tmp_path / "w.nxs"
    cmd = [BIN, "stack", "--watch", str(folder), "--pattern", "*.h5", "--out", str(out), "--frames", "7",
           "--quiet", "--idle", "60"] + (["--poll", "--poll-interval", "0.05"] if poll else [])
    stacker = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    script = tmp_path / "detector.py"
    script.write_text(HDF5_DETECTOR)
    det = subprocess.run([sys.executable, str(script), str(folder), "1.5"], capture_output=True, text=True, timeout=120)
    assert det.returncode == 0, det.stderr
    _, err = stacker.communicate(timeout=120)
    assert stacker.returncode == 0, err
    assert "skipped" not in err, err
    truth = np.load(tmp_path / "truth.npy")
    with h5py.File(out, "r") as s:
        np.testing.assert_array_equal(s["entry/instrument/detector/data"][:], truth)
        assert (s["entry/stacking/frame_status"][:] == 1).all()
        t = s["entry/instrument/NDAttributes/temperature"][:]
        np.testing.assert_array_equal(t[:4], 290.0 + np.arange(1, 5))
        assert np.isnan(t[4:]).all()
        names = [n.decode() for n in s["entry/stacking/source_file"][:]]
        assert names[0] == "scan_00001.h5[0]" and names[6] == "series_data_000002.h5[6]", names
