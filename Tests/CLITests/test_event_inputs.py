"""What reaches a macro is right or refused: files named in events are absolute wherever
the stacker, `nxlua trigger`, `nxlua replay` or the HTTP route were given them; every
option of `nxlua stack` reaches `detector.stack{...}` and unknown ones are refused; a
time limit reached inside an array kernel stops the handler there (no partial result is
ever seen). Real processes on loopback; every wait is bounded."""
import json
import pathlib
import subprocess

import h5py

from test_macros import BIN, Runner, db, http_post, records, run, serve_events, trigger, wait_caught_up
from test_stack import make_frames


KERNELS = """
-- array work until the limit: the kernel it stops raises; no partial sum is ever seen
on("point", "kernels", function(e)
  local n = 0
  while true do
    local total = (array.zeros(2000000) + 1):sum()
    n = n + 1
    if total ~= 2000000 then
      local f = assert(io.open("{wrong}", "a")); f:write(string.format("%d %.1f\\n", n, total)); f:close()
    end
  end
end)
"""


def test_a_time_limit_reached_inside_a_kernel_stops_the_handler_there(tmp_path):
    journal = tmp_path / "j.sqlite"
    folder = tmp_path / "macros"
    folder.mkdir()
    wrong = tmp_path / "wrong.txt"
    (folder / "kernels.lua").write_text(KERNELS.replace("{wrong}", str(wrong)))
    _, uid = trigger(journal, "run.start")
    for i in range(3):
        trigger(journal, "point", "--run", uid, f"motor={i}")
    runner = Runner(folder, journal, "--time-limit", "0.3")
    try:
        wait_caught_up(journal, ["kernels"], runner, timeout=120)
    finally:
        runner.stop()
    failed = [r for r in records(journal, "kernels").values() if r[0] == "failed"]
    assert len(failed) == 3 and all("time limit of 0.3 s reached" in r[1] for r in failed), failed
    assert not wrong.exists(), "a stopped kernel handed a partial result to the handler:\n" + wrong.read_text()


PATHS = """
-- where each event's file is, and whether the runner can open it from its own folder
for _, kind in ipairs({"run.start", "frames.ready", "run.stop", "point"}) do
  on(kind, "where", function(e)
    local ok = e.file and pcall(nx.load, e.file) or false
    local f = assert(io.open("{log}", "a"))
    f:write(string.format("%s %s %s\\n", e.kind, tostring(e.file), tostring(ok)))
    f:close()
  end)
end
"""


class RunnerIn(Runner):
    """`nxlua macros` started in a folder of its own."""

    def __init__(self, cwd, *args):
        self.cwd = cwd
        super().__init__(*args)

    def start(self):
        self.logfile = open(self.log, "a")
        self.p = subprocess.Popen([BIN, "macros", str(self.folder), "--journal", str(self.journal), "--poll", "0.005",
                                   "--reload-interval", "0.1", *self.extra], stdout=self.logfile,
                                  stderr=subprocess.STDOUT, cwd=self.cwd)


def test_files_in_events_are_absolute_whoever_named_them(tmp_path):
    """A stack started in one folder with relative names, macros run from another."""
    beamline, elsewhere = tmp_path / "beamline", tmp_path / "elsewhere"
    beamline.mkdir()
    elsewhere.mkdir()
    make_frames(beamline / "in", range(1, 7))
    journal = tmp_path / "j.sqlite"
    folder = tmp_path / "macros"
    folder.mkdir()
    log = tmp_path / "where.txt"
    (folder / "where.lua").write_text(PATHS.replace("{log}", str(log)))
    r = run("stack", *sorted(p.name for p in (beamline / "in").iterdir()), "--out", "../scan43.nxs", "--quiet",
            "--journal", journal, cwd=beamline / "in")
    assert r.returncode == 0, r.stderr
    r = run("trigger", "point", "--run", "r1", "--journal", journal, "--file", "./scan43.nxs", cwd=beamline)
    assert r.returncode == 0, r.stderr
    r = run("trigger", "point", "--run", "r1", "--journal", journal, "file=sub/../scan43.nxs", cwd=beamline)
    assert r.returncode == 0, r.stderr
    runner = RunnerIn(elsewhere, folder, journal, "--from-start")   # not the stacker's folder
    try:
        wait_caught_up(journal, ["where"], runner, timeout=60)
    finally:
        runner.stop()
    seen = [line.split() for line in log.read_text().splitlines()]
    want = str(beamline / "scan43.nxs")
    kinds = [s[0] for s in seen]
    assert kinds.count("point") == 2 and "run.start" in kinds and "frames.ready" in kinds and "run.stop" in kinds, seen
    assert all(s[1] == want and s[2] == "true" for s in seen), seen
    # replay, from a third folder with a relative name
    r = run("replay", "../beamline/scan43.nxs", "--journal", tmp_path / "replay.sqlite", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    with db(tmp_path / "replay.sqlite") as c:
        files = {json.loads(p).get("file") for (p,) in c.execute("SELECT payload FROM events")}
    assert files == {want}, files


def test_the_http_route_refuses_relative_files(tmp_path):
    srv, port = serve_events(tmp_path, tmp_path / "j.sqlite")
    try:
        status, body = http_post(port, "/nxlua/events", {"kind": "run.start", "file": "scan43.nxs"}, auth="ray:secret")
        assert status == 400 and "must be an absolute path" in body["error"] and "'scan43.nxs'" in body["error"], body
        status, body = http_post(port, "/nxlua/events", {"kind": "run.start", "file": "/data/scan43.nxs"}, auth="ray:secret")
        assert status == 201, body
    finally:
        srv.terminate()
        srv.wait(timeout=30)


def test_detector_stack_takes_every_option_of_nxlua_stack(tmp_path):
    files = make_frames(tmp_path / "in", range(1, 4))
    journal = tmp_path / "j.sqlite"
    listed = ", ".join(f'"{f}"' for f in files)
    r = subprocess.run([BIN, "-e", f"""
        local s = detector.stack{{files = {{{listed}}}, out = "lua.nxs", journal = "{journal}", scan_id = 5,
                                  plan = "rscan", quiet = true, compression = "gzip:1", flush_every = 2, no_sync = true}}
        print(s.stored, s.run ~= nil)
        print(pcall(detector.stack, {{files = {{{listed}}}, out = "x.nxs", bogus_option = 1}}))
        print(pcall(detector.stack, {{files = {{{listed}}}, out = "x.nxs", frames = 0}}))
    """], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "3\ttrue"
    assert "unknown option 'bogus_option'" in lines[1] and "scan_id" in lines[1] and "poll_interval" in lines[1], lines[1]
    assert "frames must be an integer of at least 1" in lines[2], lines[2]
    assert not (tmp_path / "x.nxs").exists()
    with db(journal) as c:
        start = json.loads(c.execute("SELECT payload FROM events WHERE kind = 'run.start'").fetchone()[0])
    assert start["scan_id"] == 5 and start["plan"] == "rscan" and start["file"] == str(tmp_path / "lua.nxs"), start
    with h5py.File(tmp_path / "lua.nxs", "r") as f:
        assert f["/entry/instrument/detector/data"].compression == "gzip"
