"""nxlua stack and detector.stack end to end: frames written by nxlua and by fabio are
stacked and read back with h5py + hdf5plugin and nexusformat element by element; bad,
missing and out-of-order frames; watch mode with inotify and with polling; a SWMR reader
following the growing file; resuming after SIGKILL at random moments."""
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import h5py
import hdf5plugin  # noqa: F401  (registers bitshuffle and LZ4 for h5py)
import numpy as np
import pytest

import fabio
from conftest import default_slice, thread_nices, thread_slices

ROOT = pathlib.Path(__file__).resolve().parents[2]

BIN = os.environ.get("NXLUA_BIN", str(ROOT / ".build" / "release" / "nxlua"))
SANITIZED = os.environ.get("NXLUA_SANITIZED") == "1"
# A Pilatus 100K (one module, 195 x 487) keeps the sanitized run quick; the layout and
# code paths are the same as for a 2M.
SHAPE = (195, 487)
DATA = "/entry/instrument/detector/data"


def make_frames(folder, numbers, seed=1, fmt="cbf"):
    """Writes synthetic Pilatus frames numbered as given, with nxlua's writer."""
    folder.mkdir(parents=True, exist_ok=True)
    code = f"""
    for _, n in ipairs({{{", ".join(map(str, numbers))}}}) do
      local f, h = detector.synthetic{{seed = {seed} + n, frame = n, modules = {{1, 1}}, spots = 20}}
      detector.write(string.format("{folder}/scan_%05d.{fmt}", n), f, h)
    end"""
    r = subprocess.run([BIN, "-e", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [folder / f"scan_{n:05d}.{fmt}" for n in numbers]


def stack(*args, timeout=120, **kw):
    return subprocess.run([BIN, "stack", *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)


def source(path):
    return fabio.open(str(path)).data


def check_frames(out, files, first=1):
    """Every given file's pixels sit at index number - first, and are marked stored."""
    with h5py.File(out, "r") as f:
        d = f[DATA]
        status = f["/entry/stacking/frame_status"][:]
        numbers = f["/entry/instrument/NDAttributes/frame_number"][:]
        for p in files:
            n = int(p.stem.split("_")[-1])
            i = n - first
            assert np.array_equal(d[i], source(p)), f"frame {n} differs"
            assert status[i] == 1
            assert numbers[i] == n
        return d.shape, status


def test_stack_files_read_by_h5py_and_nexusformat(tmp_path):
    files = make_frames(tmp_path / "in", range(1, 9))
    out = tmp_path / "scan.nxs"
    r = stack(*files, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "8 frames of 195x487" in r.stdout and "this run stored 8" in r.stdout
    shape, status = check_frames(out, files)
    assert shape == (8, *SHAPE)
    with h5py.File(out, "r") as f:
        d = f[DATA]
        assert d.chunks == (1, *SHAPE) and d.dtype == np.int32
        assert "32008" in d._filters  # bitshuffle + LZ4, read through hdf5plugin
        assert d.attrs["signal"] == 1
        nd = f["/entry/instrument/NDAttributes"]
        assert np.allclose(nd["start_angle"][:], 0.1 * np.arange(1, 9))
        assert nd["start_angle"].attrs["units"] == "deg"
        assert nd["time"][0].decode().startswith("2024-03-01T12:00:01")
        det = f["/entry/instrument/detector"]
        assert det["distance"][()] == pytest.approx(0.23) and det["distance"].attrs["units"] == "m"
        assert det["beam_center_x"].attrs["units"] == "pixel"
        assert det["x_pixel_size"][()] == pytest.approx(172e-6)
        assert det["count_time"][()] == pytest.approx(0.0995)
        assert det["saturation_value"][()] == 1048574
        assert "Exposure_time" in det["header"][()].decode()
        assert f["/entry/instrument/monochromator/wavelength"][()] == pytest.approx(0.9793)
        assert f["/entry/sample/rotation_angle"].id == nd["start_angle"].id  # a hard link
        assert f["/entry/stacking/source_file"][0].decode() == "scan_00001.cbf"
    from nexusformat.nexus import nxload
    root = nxload(str(out))
    plottable = root.plottable_data
    assert plottable.nxsignal.shape == (8, *SHAPE)
    assert plottable.nxaxes[0].nxname == "frame_number"
    assert np.array_equal(plottable.nxsignal[3].nxvalue, source(files[3]))


def test_frames_written_by_fabio(tmp_path):
    folder = tmp_path / "fabio"
    folder.mkdir()
    rng = np.random.default_rng(5)
    files = []
    for n in range(1, 4):
        a = rng.poisson(20, SHAPE).astype(np.int32)
        a[:, 100:107] = -1
        p = folder / f"img_{n:04d}.cbf"
        fabio.cbfimage.CbfImage(data=a).write(str(p))
        files.append(p)
    r = stack(*files, "--out", tmp_path / "f.nxs", "--compression", "lz4")
    assert r.returncode == 0, r.stderr
    check_frames(tmp_path / "f.nxs", files)


@pytest.mark.parametrize("compression,filter_id", [("none", None), ("lz4", "32004"), ("gzip:1", "gzip")])
def test_compressions(tmp_path, compression, filter_id):
    files = make_frames(tmp_path / "in", [1, 2, 3])
    out = tmp_path / "c.nxs"
    r = stack(*files, "--out", out, "--compression", compression)
    assert r.returncode == 0, r.stderr
    check_frames(out, files)
    with h5py.File(out, "r") as f:
        if filter_id is None:
            assert f[DATA].compression is None and not f[DATA]._filters
        elif filter_id == "gzip":
            assert f[DATA].compression == "gzip"
        else:
            assert filter_id in f[DATA]._filters


def test_tiff_frames(tmp_path):
    files = make_frames(tmp_path / "in", [1, 2], fmt="tif")
    r = stack(*files, "--out", tmp_path / "t.nxs")
    assert r.returncode == 0, r.stderr
    check_frames(tmp_path / "t.nxs", files)


def test_bad_frames_are_recorded_and_ingestion_goes_on(tmp_path):
    folder = tmp_path / "in"
    good = make_frames(folder, [1, 2, 4, 7])
    # 3: truncated in its binary data; 5: not a frame at all; 6: a frame of the wrong size;
    # 8: an unknown CBF compression
    data = good[0].read_bytes()
    (folder / "scan_00003.cbf").write_bytes(data[: len(data) // 2])
    (folder / "scan_00005.cbf").write_bytes(b"this is not an image\n" * 100)
    small = subprocess.run([BIN, "-e", f"""local f, h = detector.synthetic{{modules = {{2, 1}}, spots = 5}}
        detector.write("{folder}/scan_00006.cbf", f, h)"""], capture_output=True, text=True)
    assert small.returncode == 0, small.stderr
    (folder / "scan_00008.cbf").write_bytes(data.replace(b"x-CBF_BYTE_OFFSET", b"x-CBF_MYSTERY"))
    files = sorted(folder.iterdir())
    out = tmp_path / "bad.nxs"
    r = stack(*files, "--out", out, "--settle", "0")
    assert r.returncode == 2, r.stderr  # finished, with bad frames
    assert "4 bad" in r.stdout
    for name in ["scan_00003.cbf", "scan_00005.cbf", "scan_00006.cbf", "scan_00008.cbf"]:
        assert name in r.stderr
    assert "wrong size" in r.stderr and "truncated" in r.stderr.lower()
    check_frames(out, good)
    with h5py.File(out, "r") as f:
        status = f["/entry/stacking/frame_status"][:]
        assert list(status) == [1, 1, 2, 1, 2, 2, 1, 2]
        assert sorted(f["/entry/stacking/bad_frame_index"][:]) == [2, 4, 5, 7]
        names = [x.decode() for x in f["/entry/stacking/bad_frame_file"][:]]
        errors = [x.decode() for x in f["/entry/stacking/bad_frame_error"][:]]
        assert dict(zip(names, errors))["scan_00006.cbf"].startswith("wrong size")
        assert "MYSTERY" in dict(zip(names, errors))["scan_00008.cbf"].upper()
        assert (f[DATA][2] == -1).all() and (f[DATA][4] == -1).all()  # the fill value


def test_a_frame_bad_again_on_resume_keeps_one_row_with_its_attempts(tmp_path):
    folder = tmp_path / "in"
    good = make_frames(folder, [1, 2, 4])
    (folder / "scan_00003.cbf").write_bytes(good[0].read_bytes()[:1000])
    out = tmp_path / "again.nxs"
    for run in range(3):
        r = stack(*sorted(folder.iterdir()), "--out", out, "--settle", "0")
        assert r.returncode == 2, r.stderr
    (folder / "scan_00003.cbf").write_bytes(b"still not a frame\n" * 50)  # bad for another reason
    r = stack(*sorted(folder.iterdir()), "--out", out, "--settle", "0")
    assert r.returncode == 2, r.stderr
    with h5py.File(out, "r") as f:
        s = f["/entry/stacking"]
        assert list(s["bad_frame_index"][:]) == [2]
        assert [x.decode() for x in s["bad_frame_file"][:]] == ["scan_00003.cbf"]
        assert list(s["bad_frame_attempts"][:]) == [4]
        assert "cannot parse" in s["bad_frame_error"][0].decode() or "not" in s["bad_frame_error"][0].decode()
        assert list(s["frame_status"][:]) == [1, 1, 2, 1]
    check_frames(out, good)


def test_missing_frames_are_filled_and_recorded(tmp_path):
    files = make_frames(tmp_path / "in", [1, 2, 4, 5])
    out = tmp_path / "m.nxs"
    r = stack(*files, "--out", out, "--frames", 6, "--first", 1, "--fill", -7)
    assert r.returncode == 2, r.stderr
    assert "2 missing (indices 2, 5)" in r.stdout
    check_frames(out, files)
    with h5py.File(out, "r") as f:
        assert f[DATA].shape[0] == 6
        assert list(f["/entry/stacking/frame_status"][:]) == [1, 1, 0, 1, 1, 0]
        assert (f[DATA][2] == -7).all() and (f[DATA][5] == -7).all()
        assert list(f["/entry/instrument/NDAttributes/frame_number"][:]) == [1, 2, 3, 4, 5, 6]


def test_refuses_an_output_that_is_not_a_stack(tmp_path):
    other = tmp_path / "other.nxs"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    files = make_frames(tmp_path / "in", [1])
    r = stack(*files, "--out", other)
    assert r.returncode == 1
    assert "not a stack written by nxlua stack" in r.stderr and str(other) in r.stderr
    r = stack(*files)
    assert r.returncode == 1 and "--out" in r.stderr
    r = stack(tmp_path / "nothing_*.cbf", "--out", tmp_path / "n.nxs")
    assert r.returncode == 1 and "nothing_" in r.stderr


def write_then_rename(src, dst):
    tmp = dst.with_name("." + dst.name + ".part")
    tmp.write_bytes(src.read_bytes())
    os.rename(tmp, dst)


@pytest.mark.parametrize("mode", ["inotify", "poll"])
def test_watch_out_of_order_until_end_marker(tmp_path, mode):
    made = make_frames(tmp_path / "made", range(1, 7))
    watched = tmp_path / "watched"
    watched.mkdir()
    out = tmp_path / "w.nxs"
    extra = ["--poll", "--poll-interval", "0.05"] if mode == "poll" else []
    p = subprocess.Popen([BIN, "stack", "--watch", str(watched), "--out", str(out), "--end-marker", "done",
                          "--idle", "60", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for n in [2, 1, 4, 3, 6]:
            if mode == "poll" and n == 4:
                # written in two halves, as a slow writer on NFS would: not yet decodable
                data = made[n - 1].read_bytes()
                dst = watched / made[n - 1].name
                with open(dst, "wb") as fh:
                    fh.write(data[: len(data) // 3])
                    fh.flush()
                    time.sleep(0.4)
                    fh.write(data[len(data) // 3:])
            else:
                write_then_rename(made[n - 1], watched / made[n - 1].name)
            time.sleep(0.05)
        if (default := default_slice()) is not None:  # throughput work: the kernel's slice (CPUPriority)
            assert {n for _, n in thread_slices(p.pid)} == {default}, thread_slices(p.pid)
        write_then_rename(made[4], watched / made[4].name)  # frame 5, just before the marker
        (watched / "done").write_text("")
        stdout, stderr = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, stderr
    assert "end marker" in stdout
    shape, status = check_frames(out, made)
    assert shape[0] == 6 and (status == 1).all()


def test_swmr_reader_follows_the_growing_stack(tmp_path):
    made = make_frames(tmp_path / "made", range(1, 7))
    watched = tmp_path / "watched"
    watched.mkdir()
    out = tmp_path / "live.nxs"
    p = subprocess.Popen([BIN, "stack", "--watch", str(watched), "--out", str(out), "--frames", "6",
                          "--idle", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for m in made[:3]:
            write_then_rename(m, watched / m.name)
        deadline = time.time() + 30
        while not out.exists() and time.time() < deadline:
            time.sleep(0.05)
        f = None
        while time.time() < deadline:
            try:
                f = h5py.File(out, "r", libver="latest", swmr=True)
                break
            except OSError:
                time.sleep(0.05)
        assert f is not None, "the growing file could not be opened by a SWMR reader"
        d, status = f[DATA], f["/entry/stacking/frame_status"]
        # The reader's order is the writer's in reverse: the status first (a frame says
        # "stored" only once its data is flushed), then the data it vouches for.
        while time.time() < deadline:
            status.refresh()
            if status.shape[0] >= 3 and (status[:3] == 1).all():
                break
            time.sleep(0.05)
        d.refresh()
        assert np.array_equal(d[1], source(made[1]))
        for m in made[3:]:
            write_then_rename(m, watched / m.name)
        while time.time() < deadline:
            status.refresh()
            if status.shape[0] == 6 and (status[:] == 1).all():
                break
            time.sleep(0.05)
        d.refresh()
        assert d.shape[0] == 6
        assert np.array_equal(d[5], source(made[5]))
        f.close()
        stdout, stderr = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, stderr
    assert "all 6 frames in" in stdout


def test_resume_after_sigkill_at_random_moments(tmp_path):
    count = 120
    files = make_frames(tmp_path / "in", range(1, count + 1))
    out = tmp_path / "k.nxs"
    command = [BIN, "stack", *map(str, files), "--flush-every", "3", "--out"]
    subprocess.run(command + [str(tmp_path / "whole.nxs")], capture_output=True, timeout=300, check=True)
    final_size = (tmp_path / "whole.nxs").stat().st_size
    # Kill moments by progress, not by time (a loaded machine makes timings useless): each
    # run is killed once the file has grown a random part of the way to its final size,
    # which lands anywhere in a run (chunk writes, value writes, flushes, the status flush).
    rng = random.Random(20261124)
    kills = 0
    for attempt in range(12):
        before = out.stat().st_size if out.exists() else 0
        # six kills, then runs are left to finish
        target = before + rng.uniform(0.05, 0.8) * max(final_size - before, 0) if kills < 6 else float("inf")
        p = subprocess.Popen(command + [str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while p.poll() is None and time.time() < deadline:
            if out.exists() and out.stat().st_size >= target:
                p.send_signal(signal.SIGKILL)
                p.wait()
                kills += 1
                break
            time.sleep(0.002)
        stdout, stderr = p.communicate()
        if p.returncode == 0:
            break
        assert p.returncode == -signal.SIGKILL, stderr
        if out.exists():
            # readable throughout, by a SWMR reader, while no writer is running
            with h5py.File(out, "r", libver="latest", swmr=True) as f:
                stored = (f["/entry/stacking/frame_status"][:] == 1).nonzero()[0]
                for i in stored[-2:]:
                    assert np.array_equal(f[DATA][i], source(files[i])), f"frame {i} lost after a kill"
    assert p.returncode == 0, "the stack never completed"
    assert kills >= 2, "no kill hit a run (timings too slow?)"
    shape, status = check_frames(out, files)
    assert shape[0] == count and (status == 1).all()
    with h5py.File(out, "r") as f:
        assert list(f["/entry/instrument/NDAttributes/frame_number"][:]) == list(range(1, count + 1))
        assert f["/entry/stacking/bad_frame_index"].shape == (0,)
    # a rerun of a finished stack stores nothing twice
    r = stack(*files, "--out", out)
    assert r.returncode == 0 and "this run stored 0" in r.stdout and f"{count} were stored before" in r.stdout


def lookup3(data, initval=0):
    """Bob Jenkins' lookup3 hashlittle, the checksum of HDF5's version 2 and 3 superblocks."""
    m = 0xFFFFFFFF

    def rot(x, k):
        return ((x << k) | (x >> (32 - k))) & m

    def word(i):
        return int.from_bytes(data[i:i + 4].ljust(4, b"\0"), "little")

    a = b = c = (0xDEADBEEF + len(data) + initval) & m
    i, n = 0, len(data)
    while n > 12:
        a, b, c = (a + word(i)) & m, (b + word(i + 4)) & m, (c + word(i + 8)) & m
        a = ((a - c) & m) ^ rot(c, 4); c = (c + b) & m
        b = ((b - a) & m) ^ rot(a, 6); a = (a + c) & m
        c = ((c - b) & m) ^ rot(b, 8); b = (b + a) & m
        a = ((a - c) & m) ^ rot(c, 16); c = (c + b) & m
        b = ((b - a) & m) ^ rot(a, 19); a = (a + c) & m
        c = ((c - b) & m) ^ rot(b, 4); b = (b + a) & m
        i, n = i + 12, n - 12
    if n == 0:
        return c
    tail = data[i:i + n].ljust(12, b"\0")
    a = (a + int.from_bytes(tail[0:4], "little")) & m
    b = (b + int.from_bytes(tail[4:8], "little")) & m
    c = (c + int.from_bytes(tail[8:12], "little")) & m
    c ^= b; c = (c - rot(b, 14)) & m
    a ^= c; a = (a - rot(c, 11)) & m
    b ^= a; b = (b - rot(a, 25)) & m
    c ^= b; c = (c - rot(b, 16)) & m
    a ^= c; a = (a - rot(c, 4)) & m
    b ^= a; b = (b - rot(a, 14)) & m
    c ^= b; c = (c - rot(b, 24)) & m
    return c


def test_resume_when_the_superblock_end_of_file_is_stale(tmp_path):
    """A SIGKILL in the middle of a flush can leave the chunk index and frame_status of
    this flush on disk with the superblock of the flush before: its end-of-allocation
    address (EOA) then lies before chunks the index holds. Unless the resume moves the EOA
    to the end of the file (h5clear --increment), HDF5 allocates the next frames over
    stored ones. The crash is made exactly by writing such a superblock."""
    files = make_frames(tmp_path / "in", range(1, 13))
    out = tmp_path / "s.nxs"
    r = stack(*files[:8], "--out", out)
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        last_chunk = f[DATA].id.get_chunk_info(7).byte_offset
    raw = bytearray(out.read_bytes()[:48])
    assert raw[:8] == b"\x89HDF\r\n\x1a\n" and raw[8] == 3, "expected a version 3 superblock at 0"
    assert lookup3(bytes(raw[:44])) == int.from_bytes(raw[44:48], "little"), "lookup3 disagrees with HDF5"
    raw[11] = 0x05  # status flags: open for writing, SWMR writing (as a killed writer leaves them)
    raw[28:36] = last_chunk.to_bytes(8, "little")  # EOA: before frame 8's chunk
    raw[44:48] = lookup3(bytes(raw[:44])).to_bytes(4, "little")
    with open(out, "r+b") as f:
        f.write(raw)
    r = stack(*files, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "resuming: 8 frames already stored" in r.stderr
    shape, status = check_frames(out, files)
    assert shape[0] == 12 and (status == 1).all()


def test_a_reader_waiting_for_the_file_never_stops_the_stacker(tmp_path):
    """A viewer polls for the stack and opens it as a SWMR reader the moment it appears.
    The file must appear only once SWMR writing has begun: a reader holding it between
    creation and SWMR start made the stacker's reopen fail ("unable to lock file"), and
    a reader that opened it before the writer saw frames marked stored with no data."""
    made = make_frames(tmp_path / "made", range(1, 5))
    for trial in range(5):
        watched, out = tmp_path / f"watched{trial}", tmp_path / f"live{trial}.nxs"
        watched.mkdir()
        p = subprocess.Popen([BIN, "stack", "--watch", str(watched), "--out", str(out), "--frames", "4", "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            for m in made[:2]:
                write_then_rename(m, watched / m.name)
            deadline = time.time() + 120
            f = None
            while f is None and p.poll() is None and time.time() < deadline:
                try:
                    f = h5py.File(out, "r", libver="latest", swmr=True)  # no pause: any window is hit
                except (OSError, FileNotFoundError):
                    pass
            assert f is not None, p.communicate()
            with f:
                d, status = f[DATA], f["/entry/stacking/frame_status"]
                while p.poll() is None and time.time() < deadline:
                    status.refresh()
                    st = status[:]
                    d.refresh()
                    assert d.shape[0] >= (st == 1).sum(), (d.shape, st)
                    if (st == 1).sum() == 2:
                        break
                for m in made[2:]:
                    write_then_rename(m, watched / m.name)
                stdout, stderr = p.communicate(timeout=120)
            assert p.returncode == 0, stderr
        finally:
            p.kill()
        check_frames(out, made)


def test_resume_while_a_reader_has_the_file(tmp_path):
    """HDF5 allows a SWMR writer only before any reader: resuming with a reader open
    fails with a message that says so (not "not a stack"), and works once it closes."""
    made = make_frames(tmp_path / "made", range(1, 5))
    out = tmp_path / "s.nxs"
    assert stack(*made[:2], "--out", out).returncode == 0
    with h5py.File(out, "r", libver="latest", swmr=True):
        r = stack(*made, "--out", out)
    assert r.returncode == 1
    assert f"cannot resume: {out}: another process has the file open" in r.stderr
    assert "close the readers" in r.stderr
    r = stack(*made, "--out", out)
    assert r.returncode == 0, r.stderr
    check_frames(out, made)


def test_a_full_disk_stops_the_stack_cleanly_and_a_rerun_completes_it(tmp_path):
    """The output's disk fills up mid-run (a file-size limit makes writes fail with EFBIG
    as a full disk fails them with ENOSPC): the stacker stops with the system's reason
    and the file name, without a crash; once there is room, rerunning repairs the file
    (its last allocation lies past its end) and completes the stack."""
    files = make_frames(tmp_path / "in", range(1, 41))
    out = tmp_path / "full.nxs"
    r = subprocess.run(["bash", "-c", "trap '' XFSZ; ulimit -f 1500; exec \"$@\"", "limited",
                        BIN, "stack", *map(str, files), "--out", str(out), "--flush-every", "4"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert f"nxlua stack: {out}: /entry/instrument/detector/data: cannot write the chunk at" in r.stderr
    assert "file write failed: File too large (errno 27)" in r.stderr
    r = stack(*files, "--out", out)
    assert r.returncode == 0, r.stderr
    assert f"{out}: repaired: the file ended" in r.stderr
    shape, status = check_frames(out, files)
    assert shape[0] == 40 and (status == 1).all()


def test_loading_a_killed_stack(tmp_path):
    """nx.load of a stack whose stacker was killed reads it as a SWMR reader (a plain
    HDF5 reader refuses: "already open for write"); a plain writer's killed file gets a
    message that says what happened and what to do."""
    watched = tmp_path / "watched"
    made = make_frames(tmp_path / "made", [1, 2, 3])
    watched.mkdir()
    for p in made:
        write_then_rename(p, watched / p.name)
    out = tmp_path / "live.nxs"
    p = subprocess.Popen([BIN, "stack", "--watch", str(watched), "--out", str(out), "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if out.exists():
                with h5py.File(out, "r", libver="latest", swmr=True) as f:
                    if (f["/entry/stacking/frame_status"][:] == 1).sum() == 3:
                        break
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
        p.wait()
    finally:
        p.kill()
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(out, "r")
    r = subprocess.run([BIN, "-e", f"""
        local d = nx.load("{out}").entry.instrument.detector.data
        print(d.shape[1], d[2]:sum())"""], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["3", str(int(source(made[2]).astype(np.int64).sum()))]

    plain = tmp_path / "plain.h5"
    writer = subprocess.Popen([sys.executable, "-c", f"""
import h5py, sys, time
f = h5py.File({str(plain)!r}, "w", libver="latest")
f["x"] = [1, 2, 3]
f.flush()
print("open", flush=True)
time.sleep(600)"""], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "open"
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    finally:
        writer.kill()
    r = subprocess.run([BIN, "-e", f'nx.load("{plain}")'], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f"{plain}: the file is marked as open for writing: another program is writing it, or a writer was killed" in r.stderr


def test_commits_wait_for_the_disk(tmp_path):
    """Each commit's two flushes end in fdatasync (what is marked stored survives a power
    cut); --no-sync leaves the write-back to the kernel. strace counts the calls."""
    if subprocess.run(["strace", "-qq", "-o", os.devnull, "true"]).returncode != 0:
        pytest.skip("strace cannot trace here (ptrace not permitted)")
    files = make_frames(tmp_path / "in", range(1, 7))
    env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")  # LSan cannot run under ptrace
    counts = {}
    for extra in ([], ["--no-sync"]):
        out, trace = tmp_path / f"s{len(extra)}.nxs", tmp_path / f"trace{len(extra)}"
        r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=fdatasync", "-o", str(trace),
                            BIN, "stack", *map(str, files), "--flush-every", "2", "--out", str(out), *extra],
                           capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stderr
        calls = [line for line in trace.read_text().splitlines() if "fdatasync(" in line]
        assert all(line.rstrip().endswith("= 0") for line in calls), calls
        counts[bool(extra)] = len(calls)
        check_frames(out, files)
    # two flushes per commit, one more when the file closes
    assert counts[False] >= 3, counts
    assert counts[True] == 0, counts


def test_lua_detector_stack(tmp_path):
    files = make_frames(tmp_path / "in", [1, 2, 3])
    out = tmp_path / "lua.nxs"
    listed = ", ".join(f'"{p}"' for p in files)
    code = f"""
    local s = detector.stack{{files = {{{listed}}}, out = "{out}", compression = "lz4", frames = 4, quiet = true}}
    print(s.frames, s.stored, s.bad, #s.missing, s.missing[1], s.stop_reason, s.resumed)
    local f = nx.load("{out}")
    print(f.entry.data.data.shape[1], f.entry.instrument.detector.data[0]:sum())"""
    r = subprocess.run([BIN, "-e", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0].split("\t") == ["4", "3", "0", "1", "3", "no more files", "false"]
    assert lines[1].split("\t") == ["4", str(int(source(files[0]).astype(np.int64).sum()))]
    r = subprocess.run([BIN, "-e", f'detector.stack{{files = {{"{files[0]}"}}, out = "{out}", compression = 7}}'],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "compression must be a string" in r.stderr


def test_frame_numbered_before_the_first_is_recorded_not_stored(tmp_path):
    files = make_frames(tmp_path / "in", [1, 2, 3])
    out = tmp_path / "first.nxs"
    r = stack(*files, "--out", out, "--first", 2)
    assert r.returncode == 0, r.stderr
    assert "scan_00001.cbf" in r.stderr and "before the first frame number 2" in r.stderr
    check_frames(out, files[1:], first=2)
    with h5py.File(out, "r") as f:
        assert f[DATA].shape[0] == 2
        assert list(f["/entry/stacking/bad_frame_index"][:]) == [-1]
        assert f["/entry/stacking/bad_frame_file"][0].decode() == "scan_00001.cbf"


def test_idle_stop_says_the_seconds_given(tmp_path):
    """--idle 1.5 stops once no frame came for 1.5 s, and the summary says 1.5 (it said
    'idle for 1 s': the seconds were cut to an integer)."""
    watched = tmp_path / "watched"
    make_frames(watched, [1, 2])
    r = stack("--watch", watched, "--out", tmp_path / "s.nxs", "--idle", "1.5", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "stopped: idle for 1.5 s" in r.stdout + r.stderr, r.stdout + r.stderr
    r = stack("--watch", watched, "--out", tmp_path / "t.nxs", "--idle", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "stopped: idle for 1 s" in r.stdout + r.stderr, r.stdout + r.stderr


def test_watch_reads_the_names_of_a_large_folder(tmp_path):
    """A watched folder of 3000 entries (here files that are not frames) and two frames.
    The scan reads each name where readdir left it: copying whole dirents read past
    readdir's buffer for its last entries (AddressSanitizer: heap-buffer-overflow)."""
    watched = tmp_path / "watched"
    made = make_frames(watched, [1, 2])
    for n in range(3000):
        (watched / f"detector_log_entry_{n:05d}.txt").write_bytes(b"")
    r = stack("--watch", watched, "--out", tmp_path / "s.nxs", "--frames", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    check_frames(tmp_path / "s.nxs", made)


# ---------------------------------------------------------------- CPU priority

@pytest.mark.skipif(os.geteuid() != 0 or not pathlib.Path("/proc/self/autogroup").exists(),
                    reason="raising a priority needs root; the session's share needs sched_autogroup")
def test_nice_raises_the_stacker_and_its_session(tmp_path):
    """`nxlua stack --nice -5` (docs/stacking.md, "Who gets the CPU"): every thread of the
    stacker (its decoding workers too) runs at nice -5 and, leading its own session (a service, setsid), its session's
    share is raised too, so clients at nice 0 in sessions of their own no longer take CPU
    from it as equals. Without CAP_SYS_NICE the raise is refused with a message, and the
    stack is still stored at the priority it was started with. Out of range is a usage error."""
    made = make_frames(tmp_path / "made", range(1, 5))
    base = os.getpriority(os.PRIO_PROCESS, 0)
    for name, prefix, expect, session in [
            ("root", [], -5, -5),
            ("no CAP_SYS_NICE", ["setpriv", "--inh-caps=-sys_nice", "--bounding-set=-sys_nice"], base, 0)]:
        watched, out = tmp_path / f"watched-{session}", tmp_path / f"out{session}.nxs"
        watched.mkdir()
        p = subprocess.Popen([*prefix, BIN, "stack", "--watch", str(watched), "--out", str(out), "--nice", "-5",
                              "--end-marker", "done", "--idle", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
        try:
            for f in made[:2]:
                write_then_rename(f, watched / f.name)
            deadline = time.time() + 30
            while not out.exists() and time.time() < deadline:  # its workers have started
                time.sleep(0.05)
            # every thread, the decoding workers too: libdispatch gives the threads it starts
            # ("...-qos.overcommit") a nice value from their QoS class (0), and the stacker
            # sets each worker's back to its own before the worker's first frame (a thread
            # just started may not have reached its frame yet: looked at again for a while)
            deadline, with_workers = time.time() + 5, None
            while time.time() < deadline:
                threads = thread_nices(p.pid)
                if any("qos" in n for n in threads):   # idle workers end after a while
                    with_workers = threads
                    if {v for vs in threads.values() for v in vs} == {expect}:
                        break
                time.sleep(0.02)
            assert with_workers, threads
            nices = {v for vs in with_workers.values() for v in vs}
            group = pathlib.Path(f"/proc/{p.pid}/autogroup").read_text().split()[-1]
            for f in made[2:]:
                write_then_rename(f, watched / f.name)
            (watched / "done").write_text("")
            stdout, stderr = p.communicate(timeout=60)
        finally:
            p.kill()
        assert p.returncode == 0, (name, stderr)
        assert nices == {expect} and group == str(session), (name, nices, group)
        if name == "root":
            assert "not allowed" not in stderr, stderr
        else:
            assert "nxlua stack: --nice -5 not allowed (" in stderr, stderr
            assert f"above the priority it was started with needs root or CAP_SYS_NICE; stacking at nice {base}" in stderr
        shape, status = check_frames(out, made)
        assert shape[0] == 4 and (status == 1).all()
    for bad, message in [("-21", "--nice takes an integer of at least -20, not '-21'"), ("20", "--nice takes -20..19, not 20")]:
        r = subprocess.run([BIN, "stack", *map(str, made), "--out", str(tmp_path / "bad.nxs"), "--nice", bad],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and message in r.stderr, r.stderr
        assert not (tmp_path / "bad.nxs").exists()
