"""Neutron event data (Sources/NeutronEvents, the events module, g:histogram) end to end:
event files of realistic layout written by h5py (SNS-style banks beside their NXdetector,
an ESS-style bank inside its NXdetector with nanosecond integer times, a monitor, pulses),
histogrammed by nxlua and compared with numpy (histogram, histogram2d, bincount) and with
scippnexus + scipp's hist; bad files give errors naming the file, the object and what was
expected."""
import os
import pathlib
import subprocess

import h5py
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("NXLUA_BIN", str(ROOT / ".build" / "release" / "nxlua"))


def run(*args, timeout=300):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)


def nxclass(g, cls):
    g.attrs["NX_class"] = cls
    return g


def write_events(g, ids, tofs, pulse_times, counts, tof_units="microsecond", etz_units="second", etz_dtype="f8"):
    nxclass(g, "NXevent_data")
    g.create_dataset("event_id", data=ids)
    t = g.create_dataset("event_time_offset", data=tofs)
    t.attrs["units"] = tof_units
    z = g.create_dataset("event_time_zero", data=np.asarray(pulse_times, dtype=etz_dtype))
    z.attrs["units"] = etz_units
    z.attrs["offset"] = "2026-12-05T00:00:00"
    g.create_dataset("event_index", data=np.concatenate([[0], np.cumsum(counts)[:-1]]).astype("u8"))


def make_file(path, seed=7, pulses=240):
    """Two SNS-style banks (entry/bankN_events + entry/instrument/bankN with a 2-D
    detector_number and pixel offsets), an ESS-style bank (events inside the NXdetector,
    int64 ns pulse times, int32 ns times of flight) and an event monitor. Returns the
    events per bank for numpy."""
    rng = np.random.default_rng(seed)
    truth = {}
    with h5py.File(path, "w") as f:
        entry = nxclass(f.create_group("entry"), "NXentry")
        inst = nxclass(entry.create_group("instrument"), "NXinstrument")
        pulse_times = np.arange(pulses) / 60.0  # 60 Hz, seconds
        for b, (ny, nx, first) in enumerate([(8, 16, 1000), (6, 10, 5000)], start=1):
            det = nxclass(inst.create_group(f"bank{b}"), "NXdetector")
            numbers = (first + np.arange(ny * nx)).reshape(ny, nx).astype("i4")
            det.create_dataset("detector_number", data=numbers)
            xs, ys = np.meshgrid(np.arange(nx) * 0.01 - 0.05, np.arange(ny) * 0.02)
            det.create_dataset("x_pixel_offset", data=xs)
            det.create_dataset("y_pixel_offset", data=ys)
            counts = rng.poisson(300, pulses)
            n = counts.sum()
            ids = rng.choice(numbers.ravel(), n).astype("u4")
            ids[::997] = 7  # a few ids no pixel has
            tofs = np.concatenate([rng.normal(9000, 2500, n // 2), rng.uniform(50, 19500, n - n // 2)]).astype("f4")
            tofs[::1013] = 25000  # beyond the bins
            write_events(nxclass(entry.create_group(f"bank{b}_events"), "NXevent_data"), ids, tofs, pulse_times, counts)
            truth[f"/entry/bank{b}_events"] = dict(ids=ids, tofs=tofs.astype("f8"), counts=counts, numbers=numbers,
                                                    x=xs, y=ys, pulses=pulse_times)
        det = nxclass(inst.create_group("bank3"), "NXdetector")
        numbers = np.arange(1, 41).astype("i4")
        det.create_dataset("detector_number", data=numbers)
        counts = rng.poisson(100, pulses)
        n = counts.sum()
        ids = rng.choice(numbers, n).astype("i4")
        tofs = rng.integers(0, 71_000_000 // 4, n).astype("i4")  # ns
        ns = (np.arange(pulses) * (1e9 / 60)).astype("i8") + 1_700_000_000_000_000_000
        write_events(det.create_group("events"), ids, tofs, ns, counts, tof_units="ns", etz_units="ns", etz_dtype="i8")
        truth["/entry/instrument/bank3/events"] = dict(ids=ids, tofs=tofs.astype("f8"), counts=counts, numbers=numbers,
                                                       pulses=ns * 1e-9)
        mon = nxclass(entry.create_group("monitor1"), "NXmonitor")
        counts = rng.poisson(20, pulses)
        n = counts.sum()
        write_events(mon.create_group("events"), np.zeros(n, "i4"), rng.uniform(0, 19000, n).astype("f4"),
                     pulse_times, counts)
    return truth


@pytest.fixture(scope="module")
def events_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("events") / "run.nxs"
    truth = make_file(path)
    return path, truth


def nxlua_hist(tmp_path, path, body):
    """Runs a Lua chunk with `f` open on the event file and `out` a new HDF5 file; returns the
    out file's datasets as numpy arrays."""
    script = tmp_path / "h.lua"
    out = tmp_path / "out.h5"
    script.write_text(f"local f = nx.load(arg[1])\nlocal out = nx.load(arg[2], 'w')\n{body}\nout:close()\n")
    r = run(str(script), str(path), str(out))
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as h:
        return {k: h[k][()] for k in h}


def tof_bin(tofs, edges):
    """Half-open bins (scipp's convention): -1 outside [first, last)."""
    b = np.searchsorted(edges, tofs, side="right") - 1
    b[(tofs < edges[0]) | (tofs >= edges[-1])] = -1
    return b


def test_spectrum_pixels_and_log_bins_match_numpy(events_file, tmp_path):
    path, truth = events_file
    got = nxlua_hist(tmp_path, path, """
        local tof = events.edges(0, 20000, 200)
        out.spectrum = f.entry.bank1_events:histogram{tof = tof}
        local c, info = f.entry.bank1_events:histogram{tof = tof, pixels = true}
        out.pixels = c; out.ids = info.ids; out.edges = info.tof
        out.read = info.events; out.binned = info.binned
        local l, linfo = f.entry.bank2_events:histogram{tof = events.edges(10, 20000, 50, "log")}
        out.log = l; out.log_edges = linfo.tof
        out.irregular = f.entry.bank2_events:histogram{tof = {0, 100, 1000, 5000, 5001, 12000, 19999.5}}
        out.counts_only = f.entry.bank1_events:histogram{pixels = true}
        out.threads1 = f.entry.bank1_events:histogram{tof = tof, pixels = true, threads = 1, block = 777}
        out.threads3 = f.entry.bank1_events:histogram{tof = tof, pixels = true, threads = 3, block = 5000}
        -- 128 pixels x 2000 bins: more counts than a cache slice (2^17), binned sorted by slice
        local fine = events.edges(0, 20000, 2000)
        out.fine = f.entry.bank1_events:histogram{tof = fine, pixels = true}
        out.fine1 = f.entry.bank1_events:histogram{tof = fine, pixels = true, threads = 1, block = 999}
    """)
    t = truth["/entry/bank1_events"]
    edges = np.linspace(0, 20000, 201)
    np.testing.assert_allclose(got["edges"], edges, rtol=0, atol=1e-9)
    # summed spectrum: numpy's histogram (no event sits on the last edge here)
    assert (t["tofs"] != 20000).all()
    ref, _ = np.histogram(t["tofs"], bins=edges)
    np.testing.assert_array_equal(got["spectrum"], ref)
    # pixels x tof: by detector_number order, against bincount
    numbers = t["numbers"].ravel()
    np.testing.assert_array_equal(got["ids"], numbers)
    pix = np.searchsorted(numbers, t["ids"])
    known = np.isin(t["ids"], numbers)
    b = tof_bin(t["tofs"], edges)
    keep = known & (b >= 0)
    ref2 = np.bincount(pix[keep] * 200 + b[keep], minlength=numbers.size * 200).reshape(numbers.size, 200)
    np.testing.assert_array_equal(got["pixels"], ref2)
    assert got["read"] == t["ids"].size and got["binned"] == keep.sum()
    np.testing.assert_array_equal(got["threads1"], ref2)
    np.testing.assert_array_equal(got["threads3"], ref2)
    fine = np.linspace(0, 20000, 2001)
    bf = tof_bin(t["tofs"], fine)
    keepf = known & (bf >= 0)
    ref_fine = np.bincount(pix[keepf] * 2000 + bf[keepf], minlength=numbers.size * 2000).reshape(numbers.size, 2000)
    np.testing.assert_array_equal(got["fine"], ref_fine)
    np.testing.assert_array_equal(got["fine1"], ref_fine)
    # and against histogram2d over (pixel index, tof)
    h2, _, _ = np.histogram2d(pix[known], t["tofs"][known], bins=[np.arange(numbers.size + 1) - 0.5, edges])
    np.testing.assert_array_equal(got["pixels"], h2.astype(np.int64))
    # counts per pixel whatever the time: bincount
    np.testing.assert_array_equal(got["counts_only"], np.bincount(pix[known], minlength=numbers.size))
    # logarithmic bins: NumPy's geomspace edges, counts by those edges
    t2 = truth["/entry/bank2_events"]
    np.testing.assert_allclose(got["log_edges"], np.geomspace(10, 20000, 51), rtol=1e-12)
    b = tof_bin(t2["tofs"], got["log_edges"])
    np.testing.assert_array_equal(got["log"], np.bincount(b[b >= 0], minlength=50))
    irregular = np.array([0, 100, 1000, 5000, 5001, 12000, 19999.5])
    ref3, _ = np.histogram(t2["tofs"][t2["tofs"] < irregular[-1]], bins=irregular)
    np.testing.assert_array_equal(got["irregular"], ref3)


def test_all_banks_image_pulses_and_monitors(events_file, tmp_path):
    path, truth = events_file
    got = nxlua_hist(tmp_path, path, """
        local tof = events.edges(0, 20000, 100)
        out.all = f.entry:histogram{tof = tof}
        local c, info = events.histogram(arg[1], {tof = tof, pixels = true, monitors = true})
        out.allpix = c; out.allids = info.ids
        out.with_monitor = f:histogram{tof = tof, monitors = true}
        out.image = f.entry.bank1_events:histogram{image = true}
        out.image_tof = f.entry.bank2_events:histogram{image = true, tof = events.edges(0, 10000, 4)}
        out.pulses = f.entry.bank1_events:histogram{tof = tof, pulses = {0.5, 2.0}}
        out.ess = f.entry.instrument.bank3.events:histogram{tof = events.edges(0, 2e7, 40), pixels = true}
        out.ess_pulses = f.entry.instrument.bank3.events:histogram{pixels = true, pulses = {1700000001.0, 1700000002.5}}
        out.byid = f.entry.bank1_events:histogram{pixels = {1000, 1127}}
        out.byimage = f.entry.instrument.bank3.events:histogram{image = {5, 8}}
        local banks = events.banks(f, true)
        out.nbanks = #banks
        out.bank_events = banks[1].events
    """)
    edges = np.linspace(0, 20000, 101)
    banks = ["/entry/bank1_events", "/entry/bank2_events"]
    ess = truth["/entry/instrument/bank3/events"]
    # entry: the three detector banks (ns times of flight binned by the same numbers)
    ref = sum(np.histogram(truth[b]["tofs"], bins=edges)[0] for b in banks)
    ref = ref + np.histogram(ess["tofs"], bins=edges * 1000)[0]  # its ns, the first bank's us
    np.testing.assert_array_equal(got["all"], ref)
    assert got["nbanks"] == 4
    assert got["bank_events"] == truth["/entry/bank1_events"]["ids"].size
    # the monitor adds its events when asked
    assert got["with_monitor"].sum() > got["all"].sum()
    # pixels of every bank follow one another
    rows = sum(truth[b]["numbers"].size for b in banks) + ess["numbers"].size + 1
    assert got["allpix"].shape == (rows, 100)
    # image by pixel offsets: histogram2d of each event's (y, x)
    t = truth["/entry/bank1_events"]
    numbers = t["numbers"].ravel()
    known = np.isin(t["ids"], numbers)
    k = np.searchsorted(numbers, t["ids"][known])
    ys, xs = t["y"].ravel()[k], t["x"].ravel()[k]
    ny, nx = t["numbers"].shape
    h2, _, _ = np.histogram2d(ys, xs, bins=[np.arange(ny + 1) * 0.02 - 0.01, np.arange(nx + 1) * 0.01 - 0.055])
    np.testing.assert_array_equal(got["image"], h2.astype(np.int64))
    t2 = truth["/entry/bank2_events"]
    n2 = t2["numbers"].ravel()
    kn = np.isin(t2["ids"], n2)
    b = tof_bin(t2["tofs"], np.linspace(0, 10000, 5))
    sel = kn & (b >= 0)
    cell = np.searchsorted(n2, t2["ids"][sel])
    ref = np.bincount(cell * 4 + b[sel], minlength=n2.size * 4).reshape(t2["numbers"].shape + (4,))
    np.testing.assert_array_equal(got["image_tof"], ref)
    # pulse time filter: events of pulses with 0.5 <= t < 2.0 s
    starts = np.concatenate([[0], np.cumsum(t["counts"])])
    keep = np.zeros(t["ids"].size, bool)
    for p, tp in enumerate(t["pulses"]):
        if 0.5 <= tp < 2.0:
            keep[starts[p]:starts[p + 1]] = True
    np.testing.assert_array_equal(got["pulses"], np.histogram(t["tofs"][keep & (t["tofs"] < 20000)], bins=edges)[0])
    # ESS layout: events inside the NXdetector, ns integers
    e = np.linspace(0, 2e7, 41)
    b = tof_bin(ess["tofs"], e)
    pix = np.searchsorted(ess["numbers"], ess["ids"])
    ref = np.bincount(pix[b >= 0] * 40 + b[b >= 0], minlength=40 * 40).reshape(40, 40)
    np.testing.assert_array_equal(got["ess"], ref)
    starts = np.concatenate([[0], np.cumsum(ess["counts"])])
    keep = np.zeros(ess["ids"].size, bool)
    for p, tp in enumerate(ess["pulses"]):
        if 1700000001.0 <= tp < 1700000002.5:
            keep[starts[p]:starts[p + 1]] = True
    assert 0 < keep.sum() < keep.size
    np.testing.assert_array_equal(got["ess_pulses"], np.bincount(pix[keep], minlength=40))
    # pixels by event_id range, and an image by event_id = row * columns + column
    ids = t["ids"].astype(np.int64)
    inr = (ids >= 1000) & (ids <= 1127)
    np.testing.assert_array_equal(got["byid"], np.bincount(ids[inr] - 1000, minlength=128))
    np.testing.assert_array_equal(got["byimage"], np.bincount(ess["ids"][ess["ids"] < 40], minlength=40).reshape(5, 8))


def test_all_banks_fine_bins_sorted_into_one_large_result(events_file, tmp_path):
    """The three detector banks' pixels x 6000 bins (228 rows: 11 MB of counts, zeroed by
    every core at once) binned sorted by cache slices, each bank into its rows of one
    result; with blocks that cut pulses and slices, one worker or three."""
    path, truth = events_file
    got = nxlua_hist(tmp_path, path, """
        local tof = events.edges(0, 20000, 6000)
        out.two = f.entry:histogram{tof = tof, pixels = true}
        out.two1 = f.entry:histogram{tof = tof, pixels = true, threads = 1, block = 4099}
        out.two3 = f.entry:histogram{tof = tof, pixels = true, threads = 3, block = 77777}
    """)
    edges = np.linspace(0, 20000, 6001)
    refs = []
    for b in ["/entry/bank1_events", "/entry/bank2_events"]:
        t = truth[b]
        numbers = t["numbers"].ravel()
        known = np.isin(t["ids"], numbers)
        pix = np.searchsorted(numbers, t["ids"])
        bins = tof_bin(t["tofs"], edges)
        keep = known & (bins >= 0)
        refs.append(np.bincount(pix[keep] * 6000 + bins[keep], minlength=numbers.size * 6000).reshape(numbers.size, 6000))
    ess = truth["/entry/instrument/bank3/events"]
    bins = tof_bin(ess["tofs"], edges * 1000)  # its ns, the first bank's us
    pix = np.searchsorted(ess["numbers"], ess["ids"])
    refs.append(np.bincount(pix[bins >= 0] * 6000 + bins[bins >= 0], minlength=40 * 6000).reshape(40, 6000))
    ref = np.concatenate(refs)
    assert ref.sum() > 0
    for k in ("two", "two1", "two3"):
        assert got[k].shape == ref.shape, k
        np.testing.assert_array_equal(got[k], ref, err_msg=k)


def test_same_counts_as_scippnexus(events_file, tmp_path):
    sc = pytest.importorskip("scipp")  # scripts/requirements-peers.txt
    snx = pytest.importorskip("scippnexus")
    path, truth = events_file
    got = nxlua_hist(tmp_path, path, """
        out.b1 = f.entry.bank1_events:histogram{tof = events.edges(0, 20000, 200)}
        local c = f.entry.bank2_events:histogram{tof = events.edges(100, 20000, 60, "log"), pixels = {5000, 5059}}
        out.b2 = c
        out.b3 = f.entry.instrument.bank3.events:histogram{tof = events.edges(0, 2e7, 40), pixels = true}
    """)
    with snx.File(str(path)) as f:
        b1 = f["entry/bank1_events"][()]
        b2 = f["entry/bank2_events"][()]
        b3 = f["entry/instrument/bank3"][()]["events"]  # ESS layout: binned by detector_number

    def events(da):  # the events of every pulse, times in float64 (exact from float32)
        ev = da.bins.concat().value.copy()
        ev.coords["event_time_offset"] = ev.coords["event_time_offset"].to(dtype="float64")
        return ev
    ref = events(b1).hist(event_time_offset=sc.linspace("event_time_offset", 0.0, 20000.0, 201, unit="us"))
    np.testing.assert_array_equal(got["b1"], ref.values.astype(np.int64))
    ev = events(b2)
    ev.coords["event_id"] = ev.coords["event_id"].to(dtype="float64")
    ref = ev.hist(event_id=sc.arange("event_id", 4999.5, 5060.0, 1.0, unit=None),
                  event_time_offset=sc.geomspace("event_time_offset", 100.0, 20000.0, 61, unit="us"))
    np.testing.assert_array_equal(got["b2"], ref.values.astype(np.int64))
    ref = b3.hist(event_time_offset=sc.array(dims=["event_time_offset"], values=np.linspace(0, 2e7, 41).astype("int32"), unit="ns"))
    np.testing.assert_array_equal(got["b3"], ref.values.astype(np.int64))


def bad(tmp_path, edit):
    path = tmp_path / "bad.nxs"
    with h5py.File(path, "w") as f:
        entry = nxclass(f.create_group("entry"), "NXentry")
        write_events(entry.create_group("bank1_events"), np.arange(10, dtype="i4"), np.ones(10, "f4"), [0, 1], [4, 6])
        edit(f["entry/bank1_events"])
    r = run("-e", f"print(nx.load('{path}').entry.bank1_events:histogram{{tof = {{0, 2}}}})")
    assert r.returncode != 0
    return r.stderr, path


def test_bad_event_groups_name_file_object_and_expectation(tmp_path):
    err, path = bad(tmp_path, lambda g: g.__delitem__("event_index"))
    assert str(path) in err and "/entry/bank1_events" in err and "event_index" in err and "needs" in err
    def short_tof(g):
        del g["event_time_offset"]
        g.create_dataset("event_time_offset", data=np.ones(9, "f4"))
    err, path = bad(tmp_path, short_tof)
    assert str(path) in err and "event_id has 10 events but event_time_offset has 9" in err
    def long_index(g):
        del g["event_index"]
        g.create_dataset("event_index", data=np.array([0, 4, 6], "i8"))
    err, _ = bad(tmp_path, long_index)
    assert "event_time_zero has 2 pulses but event_index has 3" in err
    def beyond(g):
        g["event_index"][1] = 11
    err, _ = bad(tmp_path, beyond)
    assert "/entry/bank1_events/event_index" in err and "outside the 10 events" in err
    def backwards(g):
        g["event_index"][0] = 5
    err, _ = bad(tmp_path, backwards)
    assert "non-decreasing" in err
    # a group that is not an event bank
    r = run("-e", f"print(nx.load('{path}').entry:histogram{{tof = {{0, 2}}, image = true}})")
    assert r.returncode != 0
    # unknown option, bad edges
    r = run("-e", f"nx.load('{path}').entry.bank1_events:histogram{{tof = {{0, 2}}, bins = 3}}")
    assert r.returncode != 0 and "unknown option 'bins'" in r.stderr
    r = run("-e", f"nx.load('{path}').entry.bank1_events:histogram{{tof = {{2, 1}}}}")
    assert r.returncode != 0 and "must increase" in r.stderr


def test_truncated_file_gives_an_error_not_a_crash(tmp_path):
    path = tmp_path / "big.nxs"
    with h5py.File(path, "w") as f:
        entry = nxclass(f.create_group("entry"), "NXentry")
        n = 400_000
        write_events(entry.create_group("bank1_events"), np.arange(n, dtype="i4") % 100,
                     np.linspace(0, 1000, n).astype("f4"), [0, 1], [n // 2, n - n // 2])
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 1000):
        t = tmp_path / f"cut{cut}.nxs"
        t.write_bytes(data[:cut])
        r = run("-e", f"print(events.histogram('{t}', {{tof = {{0, 500, 1000}}, pixels = true}}))")
        assert r.returncode != 0 and r.returncode < 128, r.stderr  # an error, not a signal
        assert str(t) in r.stderr


def test_vector_listing_edges_odd_ids_and_skewed_banks_match_numpy(tmp_path):
    """The AVX2 listing loop (int32 or uint32 event_id with float32 times, equal-width bins,
    a histogram binned by cache slices) against numpy: times exactly on edges, just below
    them, on the last edge, outside, NaN and infinities; ids below and above the pixels,
    unmapped between them, negative, near 2^31 and 2^32 (uint32 with a first id past 2^31);
    a bank whose events all fall into one slice; blocks that end mid-slice, 1 and 3 threads."""
    rng = np.random.default_rng(11)
    path = tmp_path / "vec.nxs"
    n = 300_000

    def tofs_with_edges(hi):
        t = rng.uniform(-200, hi + 200, n).astype("f4")
        edges8 = np.arange(0, 8001, 8, dtype="f4")  # the 8000/1000 bins' edges, exact in float32
        t[::7] = rng.choice(edges8, t[::7].size)
        t[3::11] = np.nextafter(t[3::11], np.float32(-np.inf))
        t[5::101] = np.float32(8000)
        t[6::103] = np.float32(7000)
        t[8::97] = np.float32(0)
        t[9::997] = np.nan
        t[10::1009] = np.inf
        t[12::1013] = -np.inf
        return t

    truth = {}
    with h5py.File(path, "w") as f:
        entry = nxclass(f.create_group("entry"), "NXentry")
        inst = nxclass(entry.create_group("instrument"), "NXinstrument")
        counts = np.full(10, n // 10)
        pulses = np.arange(10) / 60.0
        # int32 ids, detector numbers with gaps (odd ids have no pixel)
        numbers = (100 + 2 * np.arange(300)).astype("i4")
        nxclass(inst.create_group("bank1"), "NXdetector").create_dataset("detector_number", data=numbers)
        ids = rng.integers(-50, 800, n).astype("i4")
        ids[::501] = np.iinfo("i4").min
        ids[1::503] = np.iinfo("i4").max
        ids[2::509] = -1
        t = tofs_with_edges(8000)
        write_events(entry.create_group("bank1_events"), ids, t, pulses, counts)
        truth["bank1"] = (ids.astype(np.int64), t.astype("f8"), numbers)
        # uint32 ids around 3e9 (pixels given as a range)
        ids = (3_000_000_000 + rng.integers(-50, 450, n)).astype("u4")
        ids[::501] = 0
        ids[1::503] = 2**32 - 1
        ids[2::509] = 2**31
        ids[3::521] = 2**31 - 1
        t = tofs_with_edges(7000)
        write_events(entry.create_group("bank2_events"), ids, t, pulses, counts)
        truth["bank2"] = (ids.astype(np.int64), t.astype("f8"), None)
        # skewed: every event on one pixel, so in one cache slice
        numbers3 = np.arange(1, 401).astype("i4")
        nxclass(inst.create_group("bank3"), "NXdetector").create_dataset("detector_number", data=numbers3)
        ids = np.full(n, 377, "i4")
        t = tofs_with_edges(8000)
        write_events(entry.create_group("bank3_events"), ids, t, pulses, counts)
        truth["bank3"] = (ids.astype(np.int64), t.astype("f8"), numbers3)

    got = nxlua_hist(tmp_path, path, """
        local a, b = events.edges(0, 8000, 1000), events.edges(0, 7000, 999)
        local u = {3000000000, 3000000399}
        for _, bank in ipairs{"bank1", "bank3"} do
            local g = f.entry[bank .. "_events"]
            out[bank .. "a"] = g:histogram{tof = a, pixels = true}
            out[bank .. "a1"] = g:histogram{tof = a, pixels = true, threads = 1, block = 4099}
            out[bank .. "b3"] = g:histogram{tof = b, pixels = true, threads = 3, block = 77777}
            out[bank .. "b1"] = g:histogram{tof = b, pixels = true, threads = 1, block = 1001}
        end
        local g = f.entry.bank2_events
        out.bank2a = g:histogram{tof = a, pixels = u}
        out.bank2a3 = g:histogram{tof = a, pixels = u, threads = 3, block = 999}
        out.bank2b1 = g:histogram{tof = b, pixels = u, threads = 1, block = 65537}
    """)
    a, b = np.linspace(0, 8000, 1001), np.linspace(0, 7000, 1000)
    checked = 0
    for key, ref_ids in got.items():
        bank, edges = key[:5], (a if key[5] == "a" else b)
        ids, tofs, numbers = truth[bank]
        if numbers is None:
            known, pix, rows = (ids >= 3_000_000_000) & (ids <= 3_000_000_399), ids - 3_000_000_000, 400
        else:
            known, pix, rows = np.isin(ids, numbers), np.searchsorted(numbers, ids), numbers.size
        bins = tof_bin(tofs, edges)
        bins[np.isnan(tofs)] = -1  # NaN: in no bin
        keep = known & (bins >= 0)
        nb = edges.size - 1
        ref = np.bincount(pix[keep] * nb + bins[keep], minlength=rows * nb).reshape(rows, nb)
        assert ref.sum() > 0
        np.testing.assert_array_equal(ref_ids, ref, err_msg=key)
        checked += 1
    assert checked == 11
