"""Beamline macros (docs/macros.md): events from the stacker, `nxlua trigger`, the HTTP
route and `nxlua replay` go into the journal; `nxlua macros` runs each macro in its own
Lua state, with durable cursors and records, limits, failure counting and live reload.
Real processes on loopback only; every wait is bounded."""
import base64
import json
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request

import h5py
import hdf5plugin  # noqa: F401  (registers bitshuffle and LZ4 for h5py)
import numpy as np
import pytest

from conftest import LIVE_SLICE, default_slice, thread_nices, thread_slices
from postgres_support import is_postgres, journal_db, journal_exists
from test_stack import make_frames, source, write_then_rename

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("NXLUA_BIN", str(ROOT / ".build" / "release" / "nxlua"))
EXAMPLES = ROOT / "scripts" / "examples" / "macros"
DATA = "/entry/instrument/detector/data"
SANITIZED = os.environ.get("NXLUA_SANITIZED") == "1"


def run(*args, timeout=120, **kw):
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)


def trigger(journal, kind, *args):
    r = run("trigger", kind, "--journal", journal, *args)
    assert r.returncode == 0, r.stderr
    seq, uid = r.stdout.split()[:2]
    return int(seq), uid


class Runner:
    """`nxlua macros DIR` as a background process, its log in a file. On PostgreSQL a
    short lease, so that a restarted runner takes its macros back soon after a SIGKILL."""
    made = 0

    def __init__(self, folder, journal, *extra, poll=("--poll", "0.005")):
        self.folder, self.journal, self.extra = folder, journal, extra
        Runner.made += 1
        self.log = pathlib.Path(f"{folder}.runner{Runner.made}.log")
        if is_postgres(journal) and "--lease" not in extra:
            self.extra = (*extra, "--lease", "1.5")
        self.poll = poll
        self.start()

    def start(self):
        self.logfile = open(self.log, "a")
        self.p = subprocess.Popen([BIN, "macros", str(self.folder), "--journal", str(self.journal), *self.poll,
                                   "--reload-interval", "0.1", *self.extra], stdout=self.logfile, stderr=subprocess.STDOUT)

    def kill(self):
        self.p.kill()
        self.p.wait(timeout=30)
        self.logfile.close()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.logfile.close()
        return self.log.read_text()

    def text(self):
        return self.log.read_text()


def db(journal):
    """A reader's connection on either engine; never creates a SQLite journal (mode=rw)."""
    return journal_db(journal)


def last_seq(journal):
    try:
        if not journal_exists(journal):
            return 0
        with db(journal) as c:
            return c.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
    except Exception:   # the first process is still making the schema
        return 0


def cursor(journal, macro):
    with db(journal) as c:
        row = c.execute("SELECT seq FROM cursors WHERE macro = ?", (macro,)).fetchone()
        return row[0] if row else -1


def wait_started(journal, macros, runner, timeout=60):
    """Until every macro has its cursor: a macro whose thread starts after its run has
    stopped begins at the journal's end (MacroWorker.startingCursor), so a test that
    feeds a short stack waits for this first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if journal_exists(journal) and all(cursor(journal, m) >= 0 for m in macros):
                return
        except Exception:  # noqa: BLE001 (the journal's tables are still being made)
            pass
        if runner.p.poll() is not None:
            raise AssertionError("the runner ended: " + runner.text())
        time.sleep(0.02)
    raise AssertionError(f"macros {macros} not started\n" + runner.text())


def wait_caught_up(journal, macros, runner=None, timeout=60):
    """Until every macro's cursor reaches the journal's last event."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        last = last_seq(journal)
        if all(cursor(journal, m) >= last for m in macros):
            return
        if runner is not None and runner.p.poll() is not None:
            raise AssertionError("the runner ended: " + runner.text())
        time.sleep(0.05)
    raise AssertionError(f"macros {macros} not caught up with {last_seq(journal)}: "
                         f"{[cursor(journal, m) for m in macros]}\n" + (runner.text() if runner else ""))


def wait_for(predicate, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def records(journal, macro):
    with db(journal) as c:
        return {seq: (status, error, attempts) for seq, status, error, attempts in
                c.execute("SELECT seq, status, error, attempts FROM records WHERE macro = ?", (macro,))}


# A macro that logs every event it handles: "seq kind run attempt version-tag".
LOGGER = """
local tag = "{tag}"
for _, kind in ipairs({{"run.start", "frames.ready", "point", "run.stop"}}) do
  on(kind, "log", function(e)
    local f = assert(io.open("{log}", "a"))
    f:write(string.format("%d %s %s %d %s\\n", e.seq, e.kind, e.run, e.attempt, tag))
    f:close()
    nxlua.sleep({pause})   -- a window in which a kill lands mid-handler
  end)
end
"""


def logger_macro(folder, name, log, tag="v1", pause=0):
    (folder / f"{name}.lua").write_text(LOGGER.format(tag=tag, log=log, pause=pause))


def log_lines(log):
    if not log.exists():
        return []
    return [line.split() for line in log.read_text().splitlines() if line.strip()]


def test_help_texts():
    for cmd in ["trigger", "macros", "replay"]:
        r = run(cmd, "--help")
        assert r.returncode == 0 and "usage: nxlua " + cmd in r.stdout and "docs/macros.md" in r.stdout


def test_trigger_events_reach_a_macro_and_records_say_done(tmp_path, journal):
    macros = tmp_path / "macros"
    macros.mkdir()
    log = tmp_path / "log.txt"
    logger_macro(macros, "logger", log)
    seq, uid = trigger(journal, "run.start", "scan_id=7", "plan=count")
    runner = Runner(macros, journal)
    try:
        trigger(journal, "point", "--run", uid, "motor=12.5", "counts=1042", "label=first")
        trigger(journal, "point", "--run", uid, "--key", "p2", "motor=13")
        r = run("trigger", "point", "--journal", journal, "--run", uid, "--key", "p2", "motor=13")
        assert r.returncode == 0 and "already journaled" in r.stdout     # the key makes a retry harmless
        trigger(journal, "run.stop", "--run", uid, "status=success")
        wait_caught_up(journal, ["logger"], runner)
    finally:
        out = runner.stop()
    lines = log_lines(log)
    # the macro joined while the run was open: it still saw the run's start
    assert [(l[1], l[2]) for l in lines] == [("run.start", uid), ("point", uid), ("point", uid), ("run.stop", uid)], out
    recs = records(journal, "logger")
    assert sorted(recs) == [int(l[0]) for l in lines] and all(v == ("done", None, 1) for v in recs.values())
    with db(journal) as c:
        payload = json.loads(c.execute("SELECT payload FROM events WHERE kind='point' ORDER BY seq LIMIT 1").fetchone()[0])
    assert payload == {"motor": 12.5, "counts": 1042, "label": "first"}
    status = run("macros", "status", "--journal", journal)
    assert status.returncode == 0 and "logger" in status.stdout and "running" in status.stdout, status.stdout


def test_bad_input_gets_clear_errors(tmp_path):
    journal = tmp_path / "j.sqlite"
    r = run("trigger", "frames.redy", "--journal", journal, "--run", "x")
    assert r.returncode == 1 and "unknown event kind 'frames.redy'" in r.stderr
    r = run("trigger", "point", "--journal", journal)
    assert r.returncode == 1 and "--run UID is required" in r.stderr
    r = run("trigger", "point", "--journal", journal, "--run", "x", "novalue")
    assert r.returncode == 1 and "'novalue' is not key=value" in r.stderr
    r = run("macros", str(tmp_path / "nope"), "--journal", journal)
    assert r.returncode == 1 and "not a folder of macros" in r.stderr
    r = run("macros", "status", "--journal", tmp_path / "none.sqlite")
    assert r.returncode == 1 and "no such journal" in r.stderr
    (tmp_path / "x.nxs").write_text("not hdf5")
    r = run("replay", tmp_path / "x.nxs", "--journal", journal)
    assert r.returncode == 1 and "x.nxs" in r.stderr
    # one runner per journal
    macros = tmp_path / "m"
    macros.mkdir()
    first = Runner(macros, journal)
    try:
        time.sleep(0.3)
        r = run("macros", macros, "--journal", journal, timeout=30)
        assert r.returncode == 1 and "another `nxlua macros` runs on this journal" in r.stderr
    finally:
        first.stop()


def stack_live(tmp_path, journal, frames, name="scan", pause=0.02):
    """Frames appear one by one in a watched folder while `nxlua stack --journal` runs."""
    made = make_frames(tmp_path / "made", range(1, frames + 1))
    watched = tmp_path / "watched"
    watched.mkdir()
    out = tmp_path / f"{name}.nxs"
    p = subprocess.Popen([BIN, "stack", "--watch", watched, "--out", out, "--end-marker", "done", "--idle", "60",
                          "--quiet", "--journal", journal, "--scan-id", "42", "--plan", "rotation", "--flush-every", "4"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p, made, watched, out


def feed(p, made, watched, pause=0.02):
    try:
        for f in made:
            write_then_rename(f, watched / f.name)
            time.sleep(pause)
        (watched / "done").write_text("")
        stdout, stderr = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 0, stderr
    return stdout


def example_folder(tmp_path, saturation):
    folder = tmp_path / "macros"
    folder.mkdir()
    for f in EXAMPLES.glob("*.lua"):
        text = f.read_text()
        if f.name == "saturation_alert.lua":
            text = text.replace("local saturation = 1000000", f"local saturation = {saturation}")
        (folder / f.name).write_text(text)
    return folder


def check_example_outputs(out, made, saturation):
    frames = np.stack([source(p).astype(np.float64) for p in made])
    with h5py.File(str(out).replace(".nxs", "_summax.nxs"), "r") as f:
        p = f["/entry/summax"]
        assert p.attrs["NX_class"] == "NXprocess"
        assert np.array_equal(p["data/sum"][()], frames.sum(0))
        assert np.array_equal(p["maximum"][()], frames.max(0))
        assert p["parameters/frames"][()] == len(made)
        assert len(p["macro_hash"][()].decode() if isinstance(p["macro_hash"][()], bytes) else p["macro_hash"][()]) == 64
    with h5py.File(str(out).replace(".nxs", "_intensity.nxs"), "r") as f:
        d = f["/entry/intensity/data"]
        signal_name = d.attrs["signal"]
        assert (signal_name.decode() if isinstance(signal_name, bytes) else signal_name) == "total"
        assert np.allclose(d["total"][()], np.maximum(frames, 0).sum(axis=(1, 2)))
        assert list(d["frame"][()]) == list(range(len(made)))
    counts = (frames >= saturation).sum(axis=(1, 2))
    expected = [i for i, n in enumerate(counts) if n > 10]
    alerts = pathlib.Path(str(out).replace(".nxs", "_alerts.txt"))
    lines = alerts.read_text().splitlines() if alerts.exists() else []
    got = [int(line.split(" frame ")[1].split(":")[0].split(" (")[0]) for line in lines]
    # each alert names the frame's source file beside its index (scan_00001.cbf is index 0)
    assert all(f"_{i + 1:05d}." in line.split(":")[0] for i, line in zip(got, lines)), lines
    assert sorted(got) == expected
    return expected


def test_stacker_events_drive_the_example_macros_and_replay_gives_the_same_outputs(tmp_path, journal):
    n = 12
    p, made, watched, out = stack_live(tmp_path, journal, n)
    # a threshold that some frames pass and some do not
    frames = np.stack([source(f) for f in made])
    saturation = None
    for q in [99.9, 99.95, 99.99, 99.995, 99.999]:
        t = int(np.percentile(frames, q))
        alerts = ((frames >= t).sum(axis=(1, 2)) > 10).sum()
        if 0 < alerts < n:
            saturation = t
            break
    assert saturation is not None, "synthetic frames give no threshold that some frames pass and others do not"
    folder = example_folder(tmp_path, saturation)
    runner = Runner(folder, journal)
    try:
        wait_started(journal, ["frame_sum_max", "intensity_monitor", "saturation_alert"], runner)
        feed(p, made, watched)
        wait_caught_up(journal, ["frame_sum_max", "intensity_monitor", "saturation_alert"], runner)
        wait_for(lambda: pathlib.Path(str(out).replace(".nxs", "_intensity.nxs")).exists(), what="outputs")
        with db(journal) as c:
            kinds = [k for (k,) in c.execute("SELECT kind FROM events ORDER BY seq")]
            start = json.loads(c.execute("SELECT payload FROM events WHERE kind='run.start'").fetchone()[0])
            ready = [json.loads(t) for (t,) in c.execute("SELECT payload FROM events WHERE kind='frames.ready' ORDER BY seq")]
            stop = json.loads(c.execute("SELECT payload FROM events WHERE kind='run.stop'").fetchone()[0])
        assert kinds[:2] == ["run.start", "stream.open"] and kinds[-2:] == ["file.closed", "run.stop"]
        assert start["scan_id"] == 42 and start["plan"] == "rotation" and start["file"] == str(out)
        # every frame announced exactly once, in file order, with its per-frame values
        covered = sorted(i for r in ready for i in range(r["first"], r["stop"]))
        assert covered == list(range(n))
        assert all(len(r["values"]["exposure_time"]) == r["count"] for r in ready)
        assert stop["status"] == "success" and stop["frames"] == n
        live = check_example_outputs(out, made, saturation)
        assert live, "the threshold should make some alerts"
        for r in records(journal, "frame_sum_max").values():
            assert r[0] in ("done", "skipped") and r[2] <= 1
        # replay: move the live outputs aside, replay the stack, same outputs again
        saved = {}
        for suffix in ["_summax.nxs", "_intensity.nxs", "_alerts.txt"]:
            path = pathlib.Path(str(out).replace(".nxs", suffix))
            saved[suffix] = path.read_bytes() if suffix.endswith(".txt") else None
            if suffix.endswith(".nxs"):
                shutil.move(path, str(path) + ".live")
            else:
                path.unlink()
        r = run("replay", out, "--journal", journal, "--chunk", "5")
        assert r.returncode == 0, r.stderr
        wait_caught_up(journal, ["frame_sum_max", "intensity_monitor", "saturation_alert"], runner)
        wait_for(lambda: pathlib.Path(str(out).replace(".nxs", "_intensity.nxs")).exists(), what="replayed outputs")
        assert check_example_outputs(out, made, saturation) == live
        with h5py.File(str(out).replace(".nxs", "_summax.nxs"), "r") as a, \
                h5py.File(str(out).replace(".nxs", "_summax.nxs") + ".live", "r") as b:
            assert np.array_equal(a["/entry/summax/data/sum"][()], b["/entry/summax/data/sum"][()])
            assert a["/entry/summax/macro_hash"][()] == b["/entry/summax/macro_hash"][()]
    finally:
        runner.stop()


ERRORING = """
on("frames.ready", "boom", function(e) error("no calibration for run " .. e.run) end)
"""
LOOPING = """
on("frames.ready", "spin", function(e) while true do end end)
"""
SLEEPING = """
-- a long wait in Swift (nxlua.sleep) stops at the time limit too
on("point", "nap", function(e) nxlua.sleep(120) end)
"""
CATCHING = """
-- pcall cannot swallow the time limit
on("point", "spin", function(e) while true do pcall(function() while true do end end) end end)
"""


def test_erroring_looping_and_broken_macros_leave_the_others_alone(tmp_path, journal):
    folder = tmp_path / "macros"
    folder.mkdir()
    log = tmp_path / "log.txt"
    logger_macro(folder, "good", log)
    (folder / "erroring.lua").write_text(ERRORING)
    (folder / "looping.lua").write_text(LOOPING)
    (folder / "catching.lua").write_text(CATCHING)
    (folder / "sleeping.lua").write_text(SLEEPING)
    _, uid = trigger(journal, "run.start")
    runner = Runner(folder, journal, "--time-limit", "0.3", "--max-failures", "3")
    try:
        events = []
        for i in range(6):
            events.append({"kind": "frames.ready", "run": uid, "stream": "detector", "first": i, "stop": i + 1,
                           "count": 1, "file": "/nowhere.nxs", "dataset": DATA, "slice": f"{i}:{i + 1}"})
        events.append({"kind": "point", "run": uid, "motor": 1.0})
        for e in events:
            args = [f"{k}={v}" for k, v in e.items() if k not in ("kind", "run")]
            trigger(journal, e["kind"], "--run", uid, *args)
        # the good macro keeps pace while the looping one spends its time limits
        wait_caught_up(journal, ["good"], runner, timeout=60)
        # a broken edit: the last good version keeps running
        (folder / "good.lua").write_text("on('point', 'log', function(e) end\n")   # missing ')'
        wait_for(lambda: "good.lua" in run("macros", "status", "--journal", journal).stdout
                 and "keeps running" in run("macros", "status", "--journal", journal).stdout, what="load error shown")
        trigger(journal, "run.stop", "--run", uid)
        wait_caught_up(journal, ["good", "catching", "sleeping"], runner, timeout=60)
        wait_for(lambda: len([r for r in records(journal, "looping").values() if r[0] == "failed"]) == 3
                 and len([r for r in records(journal, "erroring").values() if r[0] == "failed"]) == 3,
                 timeout=60, what="the looping and erroring macros to fail 3 times")
        wait_for(lambda: run("macros", "status", "--journal", journal).stdout.count("DISABLED") == 2,
                 what="both disabled in status")
        status = run("macros", "status", "--journal", journal).stdout
    finally:
        out = runner.stop()
    assert len([l for l in log_lines(log) if l[4] == "v1"]) == 9, out   # start, 6 frames, point, stop
    err = records(journal, "erroring")
    failed = [s for s, r in err.items() if r[0] == "failed"]
    assert len(failed) == 3 and all("no calibration for run" in err[s][1] and "handler 'boom'" in err[s][1] for s in failed)
    assert "erroring" in status and "DISABLED" in status and "disabled after 3 consecutive failures" in status, status
    loop = records(journal, "looping")
    assert [r[0] for r in loop.values() if r[0] != "skipped"] == ["failed"] * 3
    assert all("time limit of 0.3 s reached" in r[1] for r in loop.values() if r[0] == "failed")
    catch = records(journal, "catching")
    assert [r for r in catch.values() if r[0] == "failed"][0][1].count("time limit") == 1
    nap = [r for r in records(journal, "sleeping").values() if r[0] == "failed"]
    assert len(nap) == 1 and "time limit of 0.3 s reached" in nap[0][1]
    assert "syntax" in status or "expected" in status, status


def edit_between_runs(journal, folder, log, v2_text, before_run2=lambda runner: None):
    """Macro m (LOGGER, v1) in a runner; run 1 with two points, v2_text written after the
    first; run 2 started with one point. `before_run2(runner)` checks the runner before the
    edit and again before run 2 starts. Returns (runner, run1, run2): the runner still
    runs, run 2 is not stopped."""
    logger_macro(folder, "m", log, tag="v1")
    _, run1 = trigger(journal, "run.start")
    runner = Runner(folder, journal)
    try:
        trigger(journal, "point", "--run", run1, "x=1")
        wait_caught_up(journal, ["m"], runner)
        before_run2(runner)
        (folder / "m.lua").write_text(v2_text)
        wait_for(lambda: "takes over at the next run.start" in runner.text(), what="v2 compiled")
        trigger(journal, "point", "--run", run1, "x=2")
        trigger(journal, "run.stop", "--run", run1)
        wait_caught_up(journal, ["m"], runner)
        before_run2(runner)
        _, run2 = trigger(journal, "run.start")
        trigger(journal, "point", "--run", run2, "x=3")
        wait_caught_up(journal, ["m"], runner)
    except BaseException:
        runner.stop()
        raise
    return runner, run1, run2


def two_versions(log, run1, run2, out):
    """The events as m's versions handled them: v1 the whole first run, v2 the second."""
    tags = [(l[1], l[2], l[4]) for l in log_lines(log)]
    assert tags == [("run.start", run1, "v1"), ("point", run1, "v1"), ("point", run1, "v1"), ("run.stop", run1, "v1"),
                    ("run.start", run2, "v2"), ("point", run2, "v2"), ("run.stop", run2, "v2")], out


def test_edit_during_a_run_takes_over_at_the_next_run_start(tmp_path, journal):
    folder = tmp_path / "macros"
    folder.mkdir()
    log = tmp_path / "log.txt"
    runner, run1, run2 = edit_between_runs(journal, folder, log, LOGGER.format(tag="v2", log=log, pause=0))
    try:
        # a broken edit keeps v2
        (folder / "m.lua").write_text("this is not lua")
        wait_for(lambda: "keeps running" in runner.text(), what="the broken edit reported")
        trigger(journal, "run.stop", "--run", run2)
        wait_caught_up(journal, ["m"], runner)
    finally:
        out = runner.stop()
    two_versions(log, run1, run2, out)
    with db(journal) as c:
        versions = {r[0] for r in c.execute("SELECT DISTINCT version, macro FROM records WHERE status='done'").fetchall()}
    assert len(versions) == 2


def test_reload_now_flag_switches_at_once(tmp_path):
    journal = tmp_path / "j.sqlite"
    folder = tmp_path / "macros"
    folder.mkdir()
    log = tmp_path / "log.txt"
    logger_macro(folder, "m", log, tag="v1")
    _, uid = trigger(journal, "run.start")
    runner = Runner(folder, journal, "--reload-now")
    try:
        wait_caught_up(journal, ["m"], runner)
        logger_macro(folder, "m", log, tag="v2")
        wait_for(lambda: "replaces" in runner.text(), what="v2 at once")
        trigger(journal, "point", "--run", uid)
        wait_caught_up(journal, ["m"], runner)
    finally:
        runner.stop()
    assert [l[4] for l in log_lines(log)] == ["v1", "v2"]


def test_sigkill_of_the_runner_loses_nothing_and_records_say_what_ran_twice(tmp_path, journal):
    folder = tmp_path / "macros"
    folder.mkdir()
    log = tmp_path / "log.txt"
    logger_macro(folder, "logger", log, pause=0.03)
    n = 24
    p, made, watched, out = stack_live(tmp_path, journal, n)
    rng = random.Random(7)
    runner = Runner(folder, journal)
    try:
        # frames from the stacker and points from a trigger source, while the runner is killed
        for k, f in enumerate(made):
            write_then_rename(f, watched / f.name)
            if k % 3 == 0:
                wait_for(lambda: last_seq(journal) > 0 or p.poll() is not None, what="the run to start")
                assert p.poll() is None, f"the stacker ended ({p.returncode}): {p.communicate()[1]}"
                with db(journal) as c:
                    uid = c.execute("SELECT run FROM events WHERE kind='run.start'").fetchone()[0]
                trigger(journal, "point", "--run", uid, f"k={k}")
            if k % 6 == 5:
                time.sleep(rng.uniform(0.0, 0.15))
                runner.kill()
                runner.start()
            time.sleep(0.02)
        (watched / "done").write_text("")
        p.communicate(timeout=120)
        assert p.returncode == 0
        wait_caught_up(journal, ["logger"], runner, timeout=90)
    finally:
        p.kill()
        runner.stop()
    with db(journal) as c:
        handled = {seq for (seq,) in c.execute("SELECT seq FROM events WHERE kind IN ('run.start','frames.ready','point','run.stop')")}
        every = {seq for (seq,) in c.execute("SELECT seq FROM events")}
    recs = records(journal, "logger")
    assert set(recs) == every                      # nothing lost: every event has a record
    assert all(recs[s][0] == "done" for s in handled) and all(recs[s][0] == "skipped" for s in every - handled)
    seen = {}
    for line in log_lines(log):
        seen[int(line[0])] = seen.get(int(line[0]), 0) + 1
    assert set(seen) == handled
    for s, count in seen.items():
        # twice only where the records say a crash hit mid-handler (a second attempt)
        assert count <= recs[s][2], (s, count, recs[s])
    twice = [s for s, count in seen.items() if count > 1]
    print(f"{len(twice)} events handled twice after a kill mid-handler, "
          f"{sum(1 for r in recs.values() if r[2] > 1)} records with a second attempt")


# what a crash at exit prints: glibc's heap checks, an abort, a sanitizer's report
CRASH_SIGNS = ["malloc", "free(", "corrupted", "double free", "Aborted", "Segmentation", "Sanitizer", "SUMMARY:"]

# Preloaded into the runner: exit() pauses 20 ms among the libraries' destructors, as on
# a loaded machine. A thread still winding down when the main thread calls exit() then
# gets to run its teardown in full; with every thread joined first, it changes nothing.
SLOW_EXIT = r"""
#include <stdlib.h>
#include <unistd.h>
static void pause_in_exit(void) { usleep(20000); }
__attribute__((constructor)) static void install(void) { atexit(pause_in_exit); }
"""


def slow_exit_library(folder):
    """The SLOW_EXIT shim built with the C compiler, or None without one."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None
    (folder / "slow_exit.c").write_text(SLOW_EXIT)
    r = subprocess.run([cc, "-shared", "-fPIC", "-o", folder / "slow_exit.so", folder / "slow_exit.c"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return folder / "slow_exit.so"


def copy_journal(base, name, tmp_path):
    """A copy of the journal `base` (SQLite: a backup into a new file; PostgreSQL: a new
    database made from it as a template)."""
    if is_postgres(base):
        import psycopg
        server, db_name = str(base).rsplit("/", 1)
        copy = f"{db_name}_{name}"
        with psycopg.connect(server + "/postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {copy} TEMPLATE {db_name}")
        return f"{server}/{copy}"
    journal = tmp_path / f"{name}.sqlite"
    with db(base) as src, sqlite3.connect(journal) as dst:
        src.backup(dst)
    return journal


def test_sigterm_while_handlers_run_stops_cleanly_every_time(tmp_path, journal):
    """Issue 24: SIGTERM to `nxlua macros` while the example macros' handlers run, again
    and again. Each time the handlers in progress finish (no record is left 'running')
    and the runner exits 0 with no crash. A worker's last reference (its Lua states, the
    journal's SQLite connections) was released by its thread's thread-local destructor,
    after libdispatch had freed that thread's cache: GRDB's closing then corrupted the
    heap, seen when exit() was slow enough (1 run in 4; the shim makes it slow). On
    PostgreSQL (fewer cycles) the runner's connection pool and its LISTEN connection
    close at the stop instead."""
    if is_postgres(journal):
        cycles = 4 if SANITIZED else 10
    else:
        cycles = 10 if SANITIZED else 50
    made = make_frames(tmp_path / "made", range(1, 13))
    out, base = tmp_path / "scan.nxs", journal
    r = run("stack", *made, "--out", out, "--journal", base, "--flush-every", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    for _ in range(3):   # many events: a handler runs whenever the signal lands
        r = run("replay", out, "--journal", base, "--chunk", "1")
        assert r.returncode == 0, r.stderr
    folder = example_folder(tmp_path, 100)
    with db(base) as c:
        events = c.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    assert events > 50
    env = dict(os.environ)
    shim = slow_exit_library(tmp_path)
    if shim is not None:
        env["LD_PRELOAD"] = f"{shim} {env['LD_PRELOAD']}" if env.get("LD_PRELOAD") else str(shim)
    rng = random.Random(24)
    for cycle in range(cycles):
        journal = copy_journal(base, f"j{cycle}", tmp_path)
        p = subprocess.Popen([BIN, "macros", folder, "--journal", journal, "--from-start", "--poll", "0.005"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        try:
            def handler_started():
                if p.poll() is not None:
                    raise AssertionError(f"cycle {cycle}: the runner ended early: {p.stderr.read()}")
                with db(journal) as c:
                    return c.execute("SELECT COUNT(*) FROM records WHERE status != 'skipped'").fetchone()[0] > 0
            wait_for(handler_started, timeout=60, what=f"a handler to start (cycle {cycle})")
            time.sleep(rng.uniform(0, 0.05))   # lands during a handler or between two
            p.send_signal(signal.SIGTERM)
            _, err = p.communicate(timeout=90)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        assert p.returncode == 0, f"cycle {cycle}: exit status {p.returncode}\n{err}"
        assert err.rstrip().endswith("macros: stopped"), f"cycle {cycle}:\n{err}"
        assert not [s for s in CRASH_SIGNS if s in err], f"cycle {cycle}:\n{err}"
        with db(journal) as c:
            running = c.execute("SELECT macro, seq FROM records WHERE status = 'running'").fetchall()
            handled = c.execute("SELECT COUNT(*) FROM records WHERE status IN ('done', 'failed')").fetchone()[0]
        assert running == [], f"cycle {cycle}: handlers cut short by the stop: {running}"
        assert handled > 0
        if not is_postgres(journal):
            for suffix in ("", "-wal", "-shm", ".macros.lock"):
                pathlib.Path(str(journal) + suffix).unlink(missing_ok=True)


def http_post(port, path, body, auth=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_events(tmp_path, journal):
    """`nxlua serve` with the events route on `journal` and user ray:secret; returns
    (process, port) once it answers."""
    users = tmp_path / "users"
    r = subprocess.run([BIN, "serve", "adduser", str(users), "ray"], input="secret\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (tmp_path / "data").mkdir()
    port = free_port()
    srv = subprocess.Popen([BIN, "serve", str(tmp_path / "data"), "--host", "127.0.0.1", "--port", str(port),
                            "--users", str(users), "--journal", str(journal)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    wait_for(up, what="the server")
    return srv, port


def test_http_route_appends_events_for_authenticated_users(tmp_path, journal):
    srv, port = serve_events(tmp_path, journal)
    try:
        status, _ = http_post(port, "/nxlua/events", {"kind": "run.start"})
        assert status == 401
        status, body = http_post(port, "/nxlua/events", {"kind": "run.start", "plan": "count", "scan_id": 3}, auth="ray:secret")
        assert status == 201, body
        uid = body["events"][0]["run"]
        batch = [{"kind": "point", "run": uid, "key": f"{uid}/p{i}", "motor": i * 0.5, "det": [1, 2, 3]} for i in range(3)]
        status, body = http_post(port, "/nxlua/events", batch, auth="ray:secret")
        assert status == 201 and [e["duplicate"] for e in body["events"]] == [False] * 3
        status, body = http_post(port, "/nxlua/events", batch[:1], auth="ray:secret")
        assert status == 201 and body["events"][0]["duplicate"] is True
        status, body = http_post(port, "/nxlua/events", {"kind": "nonsense", "run": uid}, auth="ray:secret")
        assert status == 400 and "unknown event kind 'nonsense'" in body["error"]
        status, body = http_post(port, "/nxlua/events", {"kind": "point"}, auth="ray:secret")
        assert status == 400 and "no \"run\" uid" in body["error"]
    finally:
        srv.terminate()
        srv.wait(timeout=30)
    with db(journal) as c:
        rows = c.execute("SELECT kind, source, payload FROM events ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == ["run.start", "point", "point", "point"]
    assert all(r[1] == "http:ray" for r in rows)
    assert json.loads(rows[1][2]) == {"motor": 0.0, "det": [1, 2, 3]}


def test_stacker_killed_and_resumed_announces_every_frame_of_one_run(tmp_path, journal):
    """SIGKILL of the stacker at random moments: the resumed stack keeps its run uid and
    announces the stored frames the journal lacks (a crash between the file's commit and
    the journal's), so every stored frame is announced, once, in the one run."""
    count = 120
    files = make_frames(tmp_path / "in", range(1, count + 1))
    out = tmp_path / "k.nxs"
    command = [BIN, "stack", *map(str, files), "--flush-every", "3", "--quiet", "--journal", str(journal), "--out", str(out)]

    def announced():
        try:
            with db(journal) as c:
                return c.execute("SELECT COUNT(*) FROM events WHERE kind = 'frames.ready'").fetchone()[0]
        except Exception:   # the first stacker is still making the schema
            return 0
    # three kills, each soon after that stacker announced frames of its own (kill moments
    # scaled by a timed run missed the runs on a loaded machine), then a run to the end
    rng = random.Random(11)
    kills = 0
    for attempt in range(40):
        p = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if kills < 3:
            seen, deadline = announced(), time.time() + 120
            while p.poll() is None and announced() <= seen and time.time() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.02))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
                kills += 1
        p.communicate(timeout=300)
        if p.returncode == 0:
            break
    assert p.returncode == 0, "the stack never completed"
    # frames lost from the journal in a crash (simulated: announcements removed) come back
    with db(journal) as c:
        c.execute("DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE kind = 'frames.ready' ORDER BY seq LIMIT 2)")
    r = run("stack", *files, "--quiet", "--journal", journal, "--out", out)
    assert r.returncode == 0, r.stderr
    with db(journal) as c:
        runs = {uid for (uid,) in c.execute("SELECT DISTINCT run FROM events")}
        ready = [json.loads(t) for (t,) in c.execute("SELECT payload FROM events WHERE kind = 'frames.ready'")]
        marks = [(k, json.loads(t)) for k, t in c.execute(
            "SELECT kind, payload FROM events WHERE kind IN ('run.start', 'run.stop') ORDER BY seq")]
        reopened = [json.loads(t) for (t,) in c.execute("SELECT payload FROM events WHERE kind = 'stream.open'")]
    assert len(runs) == 1, runs
    covered = sorted(i for e in ready for i in range(e["first"], e["stop"]))
    assert covered == list(range(count)), "frames announced twice or never"
    assert any(e.get("recovered") for e in ready)
    # a killed stack continues its run, with a stream.open marked resumed; one that stopped
    # starts again, marked resumed (the first start is marked resumed when a kill came
    # before its announcement)
    after_kills = [e for e in reopened if e.get("resumed")]
    assert after_kills and all("ended without stopping" in e["after"] for e in after_kills), reopened
    assert marks[0][0] == "run.start"
    for (before, _), (kind, payload) in zip(marks, marks[1:]):
        if kind == "run.start":
            assert before == "run.stop" and payload["resumed"], marks
    assert marks[-1][0] == "run.stop" and marks[-1][1]["status"] == "success"
    assert sum(1 for k, _ in marks if k == "run.start") >= 2   # the rerun of the finished stack
    assert kills >= 2, f"{kills} kills: the stacks ended before they could be killed"


def test_lua_detector_stack_announces_events(tmp_path, journal):
    files = make_frames(tmp_path / "in", range(1, 5))
    out = tmp_path / "s.nxs"
    code = f"""
    local files = {{{", ".join(repr(str(f)) for f in files)}}}
    local s = detector.stack{{files = files, out = "{out}", quiet = true, journal = "{journal}", run = "lua-run-1"}}
    print(s.run, s.stored)"""
    r = run("-e", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["lua-run-1", "4"]
    with db(journal) as c:
        rows = [(k, run_uid) for k, run_uid in c.execute("SELECT kind, run FROM events ORDER BY seq")]
    assert rows[0] == ("run.start", "lua-run-1") and rows[-1] == ("run.stop", "lua-run-1")
    assert {k for k, _ in rows} == {"run.start", "stream.open", "frames.ready", "file.closed", "run.stop"}


def test_one_run_uid_for_two_stacks_keeps_both(tmp_path, journal):
    files = make_frames(tmp_path / "in", range(1, 4))
    for name in ("a.nxs", "b.nxs"):
        r = run("stack", *files, "--quiet", "--journal", journal, "--run", "shared", "--out", tmp_path / name)
        assert r.returncode == 0, r.stderr
    with db(journal) as c:
        ready = [json.loads(t)["file"] for (t,) in c.execute("SELECT payload FROM events WHERE kind = 'frames.ready'")]
        starts = c.execute("SELECT COUNT(*) FROM events WHERE kind = 'run.start' AND run = 'shared'").fetchone()[0]
    assert starts == 2 and {pathlib.Path(f).name for f in ready} == {"a.nxs", "b.nxs"}


def test_until_idle_waits_for_the_batch_process_and_ends_it(tmp_path):
    """`nxlua macros --until-idle` with a macro that says macro.heavy(): the runner exits
    once the batch process has caught up too (its cursor is in the journal), and the
    batch process ends with it; --until-idle and --keep are the runner's, not passed on."""
    journal = str(tmp_path / "j.sqlite")
    macros = tmp_path / "macros"
    macros.mkdir()
    out = tmp_path / "seen.txt"
    (macros / "declared.lua").write_text(f"""
macro.heavy()
on("point", "declared", function(e)
  local f = assert(io.open({json.dumps(str(out))}, "a")); f:write(e.seq, "\\n"); f:close()
end)
""")
    (macros / "light.lua").write_text(LIGHT)
    _, uid = trigger(journal, "run.start")
    for i in range(5):
        trigger(journal, "point", "--run", uid, f"i={i}")
    r = run("macros", macros, "--journal", journal, "--until-idle", "--keep", "30d", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "macro declared: runs in the batch process" in r.stderr and "macros: stopped" in r.stderr, r.stderr
    assert [int(x) for x in out.read_text().split()] == list(range(2, 7)), r.stderr
    pid = int(re.search(r"batch process (\d+) started", r.stderr).group(1))
    assert not alive(pid)
    assert cursor(journal, "declared") == cursor(journal, "light") == last_seq(journal)


def test_help_knows_the_macro_functions(tmp_path):
    # help(on), help(macro.frames), help("macro") inside a macro's state
    journal = tmp_path / "j.sqlite"
    macros = tmp_path / "macros"
    macros.mkdir()
    out = tmp_path / "help.txt"
    (macros / "helpme.lua").write_text(f"""
        local h = require "nxlua.help"
        local f = io.open("{out}.part", "w")
        f:write(h.text(on), h.text(off), h.text(macro.frames), h.text(macro.write_process), h.text(macro.heavy), h.text("macro"))
        f:close()
        os.rename("{out}.part", "{out}")
    """)
    trigger(journal, "run.start", "scan_id=1")
    runner = Runner(macros, journal)
    try:
        deadline = time.time() + 30
        while not out.exists() and time.time() < deadline:
            time.sleep(0.05)
    finally:
        runner.stop()
    text = out.read_text()
    for s in ["on(kind, key, fn)", "SPEC's cdef", "off(kind, key)", "macro.frames(event) -> ndarray",
              "macro.write_process(file, name, t)", "beamline macros: event handlers", "macro.open",
              "macro.heavy()", "runner's batch process"]:
        assert s in text, (s, text)
    assert "no help" not in text


def test_replayed_frames_ready_carry_the_frame_files_as_live_ones_do(tmp_path, journal, another_journal):
    """frames.ready from the stacker carries `sources`, the frame file of each frame;
    `nxlua replay` reads them from the stack's stacking/source_file and announces the
    same names for the same frames (a hole, frame 3, announced by neither)."""
    made = make_frames(tmp_path / "made", [1, 2, 4, 5])
    out = tmp_path / "scan.nxs"
    live, replayed = journal, another_journal("replay")
    r = run("stack", *made, "--out", out, "--frames", "5", "--journal", live, "--flush-every", "1", "--quiet")
    assert r.returncode == 2, r.stderr   # finished, with frame 3 missing
    r = run("replay", out, "--journal", replayed, "--chunk", "3")
    assert r.returncode == 0, r.stderr

    def sources(journal):
        by_frame = {}
        with db(journal) as c:
            for (payload,) in c.execute("SELECT payload FROM events WHERE kind = 'frames.ready' ORDER BY seq"):
                e = json.loads(payload)
                assert len(e["sources"]) == e["count"] == e["stop"] - e["first"], e
                by_frame.update(zip(range(e["first"], e["stop"]), e["sources"]))
        return by_frame

    expected = {n - 1: p.name for n, p in zip([1, 2, 4, 5], made)}
    assert sources(live) == expected
    assert sources(replayed) == expected


def test_status_shows_a_removed_macro_as_removed_not_with_its_old_error(tmp_path, journal):
    """A macro whose file is deleted is listed as removed, without its old failures and
    error, by `nxlua macros status` from any folder, while the runner runs and after;
    the runner was given a relative folder (macro paths are kept absolute)."""
    folder = tmp_path / "macros"
    folder.mkdir()
    log = tmp_path / "log.txt"
    logger_macro(folder, "good", log)
    (folder / "broken.lua").write_text("on('point', 'calib', function(e) error('no calibration for this run') end)\n")
    _, uid = trigger(journal, "run.start")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def status():
        r = run("macros", "status", "--journal", journal, cwd=elsewhere)
        assert r.returncode == 0, r.stderr
        return r.stdout

    logfile = open(tmp_path / "runner.log", "w")
    p = subprocess.Popen([BIN, "macros", "macros", "--journal", str(journal), "--max-failures", "1", "--poll", "0.005",
                          "--reload-interval", "0.1"], cwd=tmp_path, stdout=logfile, stderr=subprocess.STDOUT)
    try:
        trigger(journal, "point", "--run", uid, "motor=1")
        wait_for(lambda: "disabled after 1 consecutive failures" in status(), what="broken disabled")
        before = status()
        assert "no calibration for this run" in before and "DISABLED" in before, before
        (folder / "broken.lua").unlink()
        wait_for(lambda: "file removed" in (tmp_path / "runner.log").read_text(), what="the runner to see the removal")
        trigger(journal, "point", "--run", uid, "motor=2")
        wait_caught_up(journal, ["good"])
        while_running = status()
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        logfile.close()
    for text in (while_running, status()):
        rows = {line.split()[0]: line for line in text.splitlines()[2:] if line and not line.startswith(("good:", "broken:"))}
        assert "removed" in rows["broken"] and "DISABLED" not in rows["broken"], text
        assert "1 in a row" not in rows["broken"], text
        assert "no calibration" not in text and "disabled after" not in text, text
        assert f"broken: removed ({folder / 'broken.lua'} is gone)" in text, text
        assert "running" in rows["good"] and "removed" not in rows["good"], text


def test_macros_reading_the_same_frames_each_get_their_own_copy(tmp_path):
    # The runner decompresses an announced block once and hands every macro a copy
    # (MacroSetup.readFrames): one macro writing into its frames in place must not change
    # what the others read, whichever reads first.
    journal = tmp_path / "j.sqlite"
    n = 8
    p, made, watched, out = stack_live(tmp_path, journal, n)
    folder = tmp_path / "macros"
    folder.mkdir()
    logs = {}
    for name, body in (("zeroer", "b:mul_(0)"), ("scaler", "b:mul_(3)"), ("summer", "")):
        logs[name] = tmp_path / f"{name}.log"
        (folder / f"{name}.lua").write_text(f"""
on("frames.ready", "{name}", function(e)
  local b = macro.frames(e)
  {body}
  local f = assert(io.open({json.dumps(str(logs[name]))}, "a"))
  for i, s in ipairs(b:sum({{1, 2}}):totable()) do f:write(e.first + i - 1, " ", s, "\\n") end
  f:close()
end)
""")
    runner = Runner(folder, journal)
    try:
        wait_started(journal, ["zeroer", "scaler", "summer"], runner)
        feed(p, made, watched)
        wait_caught_up(journal, ["zeroer", "scaler", "summer"], runner)
    finally:
        runner.stop()
    expected = {i: int(source(f).astype(np.int64).sum()) for i, f in enumerate(made)}
    for name, factor in (("summer", 1), ("scaler", 3), ("zeroer", 0)):
        got = {int(a): int(b) for a, b in (line.split() for line in logs[name].read_text().splitlines())}
        assert got == {i: factor * s for i, s in expected.items()}, name


def thread_write_calls(pid):
    """{thread name: write system calls so far} (syscw of /proc/PID/task/TID/io)."""
    out = {}
    for t in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (t / "comm").read_text().strip()
            fields = dict(line.split(": ") for line in (t / "io").read_text().splitlines())
            out[name] = int(fields["syscw"])
        except (OSError, KeyError, ValueError):
            pass
    return out


def autogroup_nice(pid):
    text = pathlib.Path(f"/proc/{pid}/autogroup").read_text()   # "/autogroup-123 nice 10"
    return int(text.split()[-1])


LIGHT = """
on("point", "light", function(e) end)
"""


def batch_pid(log):
    """The runner's batch process, from its log ("batch process PID started")."""
    found = re.findall(r"macros: batch process (\d+) started", log.read_text())
    return int(found[-1]) if found else None


def alive(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


COUNTING_HEAVY = """
local n = 0   -- state kept during a run, as the example macros keep theirs
on("point", "heavy", function(e)
  local t = os.clock()
  while os.clock() - t < 0.06 do end   -- 60 ms of CPU (the process's), as a sum over whole frames
  n = n + 1
  local f = assert(io.open(OUT, "a")); f:write(e.seq, " ", n, "\\n"); f:close()
end)
"""
DECLARED = """
macro.heavy()
on("point", "declared", function(e) end)
"""


FAILING_HEAVY = """
on("point", "fit", function(e)
  local t = os.clock()
  while os.clock() - t < 0.06 do end   -- 60 ms of CPU: heavy, measured
  error("no peak in point " .. e.seq)
end)
"""


DECLARED_FAILING = """
macro.heavy()
for _, kind in ipairs({"run.start", "point"}) do
  on(kind, "fit", function(e) error("no model for " .. e.kind .. " " .. e.seq) end)
end
"""


def macro_row(journal, macro):
    """The macro's status as the journal holds it: (failures in a row, in all, disabled)."""
    with sqlite3.connect(journal) as c:
        return c.execute("SELECT failures, total_failures, disabled FROM macros WHERE macro = ?", (macro,)).fetchone()


def test_failures_in_a_row_go_on_counting_wherever_the_macro_moves(tmp_path):
    """A heavy macro that keeps failing is disabled at its fifth failure in a row however
    they are shared between the runner and its batch process: two in the runner, two in
    the batch process after the move at run.start, the fifth in the runner again after the
    batch process died. Each point is tried once; none after the macro is disabled. A
    macro disabled in the batch process stays disabled when the runner takes it back."""
    journal = str(tmp_path / "j.sqlite")
    macros = tmp_path / "macros"
    macros.mkdir()
    (macros / "fit.lua").write_text(FAILING_HEAVY)
    (macros / "fit2.lua").write_text(DECLARED_FAILING)   # run.start, 2 points, run.start, 1 point
    (macros / "light.lua").write_text(LIGHT)
    _, uid = trigger(journal, "run.start")
    log = tmp_path / "runner.log"

    def failed():
        with sqlite3.connect(journal) as c:
            return c.execute("SELECT count(*) FROM records WHERE macro = 'fit' AND status = 'failed'").fetchone()[0]

    def points(n, run, total):
        for i in range(n):
            trigger(journal, "point", "--run", run, f"i={i}")
        wait_for(lambda: failed() == total, timeout=120, what=f"{total} failures")
        wait_for(lambda: macro_row(journal, "fit")[0] == total, timeout=30, what=f"the status to say {total} in a row")

    with open(log, "w") as out:
        p = subprocess.Popen([BIN, "macros", str(macros), "--journal", journal, "--poll", "0.005"],
                             stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        points(2, uid, 2)
        assert "macro fit: handlers take about" in log.read_text(), log.read_text()
        _, uid2 = trigger(journal, "run.start")
        points(2, uid2, 4)
        child = batch_pid(log)
        assert child and f"macro fit: runs in the batch process {child}" in log.read_text(), log.read_text()
        assert macro_row(journal, "fit") == (4, 4, 0)
        wait_for(lambda: macro_row(journal, "fit2") == (5, 5, 1), timeout=30, what="fit2 disabled in the batch process")
        os.kill(child, signal.SIGKILL)
        wait_for(lambda: "its macros run here again" in log.read_text(), timeout=30, what="the runner to take it back")
        points(1, uid2, 5)
        wait_for(lambda: macro_row(journal, "fit")[2] == 1, timeout=30, what="the macro to be disabled")
        text = log.read_text()
        assert "macro fit: disabled after 5 consecutive failures (last: " in text and "no peak in point" in text, text
        assert macro_row(journal, "fit") == (5, 5, 1)
        # disabled: the next points are not tried
        trigger(journal, "point", "--run", uid2, "i=9")
        wait_for(lambda: cursor(journal, "light") >= last_seq(journal), timeout=30, what="the light macro")
        time.sleep(0.3)
        assert failed() == 5
        with sqlite3.connect(journal) as c:
            for m in ("fit", "fit2"):
                assert c.execute("SELECT count(*), max(attempts) FROM records WHERE macro = ? "
                                 "AND status != 'skipped'", (m,)).fetchone() == (5, 1), m
        assert macro_row(journal, "fit2") == (5, 5, 1)
        assert "macro fit2: taken over, still disabled after 5 consecutive failures (last: " in log.read_text()
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)


def test_a_new_version_that_says_heavy_moves_to_the_batch_process_at_run_start(tmp_path):
    """A light macro edited during a run into one that says macro.heavy(): the new version
    waits for the next run.start as any edit does, and takes over there in the batch
    process, from that run.start on; the old version handled every event before it, in
    the runner. Each event once."""
    journal = str(tmp_path / "j.sqlite")
    folder = tmp_path / "macros"
    folder.mkdir()
    log = tmp_path / "events.txt"

    def still_in_the_runner(runner):   # v1 is light: it stays until run.start
        assert "macro.m" in thread_nices(runner.p.pid) and batch_pid(runner.log) is None, runner.text()

    runner, run1, run2 = edit_between_runs(journal, folder, log, "macro.heavy()\n" + LOGGER.format(tag="v2", log=log, pause=0),
                                           before_run2=still_in_the_runner)
    try:
        trigger(journal, "run.stop", "--run", run2)
        wait_caught_up(journal, ["m"], runner)
        child = batch_pid(runner.log)
        text = runner.text()
        assert child and f"macro m: runs in the batch process {child}" in text, text
        assert "macro.m" not in thread_nices(runner.p.pid) and "macro.m" in thread_nices(child)
    finally:
        out = runner.stop()
    two_versions(log, run1, run2, out)
    with db(journal) as c:
        rows = c.execute("SELECT status, attempts FROM records WHERE macro = 'm'").fetchall()
    assert rows == [("done", 1)] * 7, rows


@pytest.mark.skipif(not pathlib.Path("/proc/self/autogroup").exists(), reason="kernel without sched_autogroup")
def test_runner_yields_the_cpu_to_the_stacker_and_heavy_macros_to_light_ones(tmp_path):
    """`nxlua macros` lowers its priority to nice 10 by default (its session's too when it
    leads one: a service, setsid), so a stacker on the same machine keeps its rate. Heavy
    macros run in the runner's batch process, which leads a session of its own 5 steps
    lower (in the runner's session they kept the session busy and the light handlers woke
    behind them): a macro that says macro.heavy() from its first event; one whose handlers
    average more than 20 ms of CPU at once 5 steps lower in the runner (its journal writes
    on a thread at the runner's priority: a preempted heavy thread holding the journal's
    write lock held up everyone else), and in the batch process from the next run.start
    (its state starts anew there, as a new version's). Each event is handled once. The
    batch process ends with the runner (SIGTERM: after its handlers; SIGKILL of the runner:
    killed too); when it dies, its macros run in the runner again, below the light ones."""
    journal = str(tmp_path / "j.sqlite")
    macros = tmp_path / "macros"
    macros.mkdir()
    counts = tmp_path / "heavy.counts"
    (macros / "heavy.lua").write_text(COUNTING_HEAVY.replace("OUT", json.dumps(str(counts))))
    (macros / "declared.lua").write_text(DECLARED)
    (macros / "light.lua").write_text(LIGHT)
    _, uid = trigger(journal, "run.start")
    base = os.getpriority(os.PRIO_PROCESS, 0)
    runner_nice, batch_nice = max(base, 10), min(19, max(base, 10) + 5)
    log = tmp_path / "runner.log"
    names = ("heavy", "declared", "light")

    def handled(n, run):
        for i in range(n):
            trigger(journal, "point", "--run", run, f"i={i}")
        wait_for(lambda: all(cursor(journal, m) >= last_seq(journal) for m in names),
                 timeout=120, what="the macros to handle the points")

    with open(log, "w") as out:
        p = subprocess.Popen([BIN, "macros", str(macros), "--journal", journal, "--poll", "0.005"],
                             stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        handled(4, uid)
        text = log.read_text()
        child = batch_pid(log)
        assert child and f"macro declared: runs in the batch process {child}" in text, text
        assert "macro declared: it says macro.heavy(); it moves to the batch process" in text, text
        assert "macro heavy: handlers take about" in text and "it moves to the batch process at the next run.start" in text, text
        assert "macros batch" in pathlib.Path(f"/proc/{child}/cmdline").read_text().replace("\0", " ")
        assert os.getsid(child) == child
        # the heavy macro stays in the runner until the run ends, 5 steps lower
        nices = thread_nices(p.pid)
        assert autogroup_nice(p.pid) == runner_nice, nices
        assert nices["macro.heavy"] == [batch_nice] and "macro.declared" not in nices, (nices, text)
        # every other thread at the runner's (Dispatch's too: see test_live_serve)
        assert {v for name, vs in nices.items() if name != "macro.heavy" for v in vs} == {runner_nice}, nices
        child_nices = thread_nices(child)
        assert "macro.declared" in child_nices and {v for vs in child_nices.values() for v in vs} == {batch_nice}, child_nices
        assert autogroup_nice(child) == batch_nice
        # short slices (a light handler is woken sooner); heavy work has the default
        if (default := default_slice()) is not None:
            slices = dict(thread_slices(p.pid))
            assert slices["macro.heavy"] == default, slices
            assert slices["macro.light"] == slices["macros.writes"] == slices["nxlua"] == LIVE_SLICE, slices
            assert {s for _, s in thread_slices(child)} == {default}, thread_slices(child)
        # meanwhile the heavy macro's records and cursor are written by that thread
        before = thread_write_calls(p.pid)
        handled(2, uid)
        after = thread_write_calls(p.pid)
        assert after["macro.heavy"] - before["macro.heavy"] == 2, (before, after)   # its counts file's, one per event
        assert after["macros.writes"] > before["macros.writes"], (before, after)

        # the next run: the heavy macro continues in the batch process, its state anew
        _, uid2 = trigger(journal, "run.start")
        handled(3, uid2)
        assert "macro heavy: a new run starts; it moves to the batch process" in log.read_text(), log.read_text()
        assert "macro.heavy" not in thread_nices(p.pid) and "macro.heavy" in thread_nices(child)
        assert [int(line.split()[1]) for line in counts.read_text().splitlines()] == [1, 2, 3, 4, 5, 6, 1, 2, 3]

        # the batch process dies: its macros run in the runner again, below the light one
        os.kill(child, signal.SIGKILL)
        wait_for(lambda: "its macros run here again" in log.read_text(), timeout=30, what="the runner to take them back")
        handled(2, uid2)
        nices = thread_nices(p.pid)
        assert nices["macro.heavy"] == nices["macro.declared"] == [batch_nice], (nices, log.read_text())
        assert nices["macro.light"] == [runner_nice], nices
        with sqlite3.connect(journal) as c:
            rows = c.execute("SELECT macro, status, attempts FROM records WHERE status != 'skipped'").fetchall()
        for m in names:                                # killed between events: none twice
            assert [r[1:] for r in rows if r[0] == m] == [("done", 1)] * 11, (m, rows)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
    assert "macro light: handlers take" not in log.read_text(), log.read_text()

    # a runner killed with SIGKILL takes its batch process with it; SIGTERM ends both
    # after their handlers
    for end in ("kill", "term"):
        with open(log, "w") as out:
            p = subprocess.Popen([BIN, "macros", str(macros), "--journal", journal, "--poll", "0.005"],
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: batch_pid(log), timeout=60, what="the batch process to start")
            child = batch_pid(log)
            p.kill() if end == "kill" else p.send_signal(signal.SIGTERM)
            wait_for(lambda: not alive(child), timeout=30, what=f"the batch process to end ({end})")
        finally:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=60) == (-signal.SIGKILL if end == "kill" else 0), log.read_text()
    assert "macros: stopped" in log.read_text() and "batch process" in log.read_text()

    # --nice 0 keeps the priority it was started with; out of range is a usage error
    with open(log, "w") as out:
        p = subprocess.Popen([BIN, "macros", str(macros), "--journal", journal, "--nice", "0"],
                             stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "running" in log.read_text(), timeout=60, what="the runner to start")
        assert {v for vs in thread_nices(p.pid).values() for v in vs} == {base}, thread_nices(p.pid)
        assert autogroup_nice(p.pid) == 0
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
    r = run("macros", str(macros), "--journal", journal, "--nice", "20")
    assert r.returncode != 0 and "--nice takes 0..19, not 20" in r.stderr, r.stderr
