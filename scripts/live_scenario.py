"""The live scenario of issue 24, with real processes on loopback: a detector process
renames frame files into a watched folder at a fixed rate; `nxlua stack --watch
--journal --flush-every 1` stacks them; `nxlua serve --allow-eval` serves the growing
stack; `nxlua macros` runs the three shipped example macros and a latency macro; three
clients read the stack while it grows (nx.remote waiting for each change with r:wait,
h5pyd 1.0 every 50 ms, each poll reading the newest stored frame, whose pixels (their
CRC-32 for h5pyd, sum and maximum for nx.remote) are checked against its source CBF's
after the run; and a repeated `r:eval`
of a per-frame sum over the whole stack). The stacker (at --nice -5, as docs/stacking.md
says for a shared machine) is killed with SIGKILL at about half the frames and started
again with the same command while everything else keeps running.

One harness, two callers: Tests/CLITests/test_live.py (scaled down, correctness only)
and `scripts/bench live` (100 frames/s, timings against the goals). As a command:

    ~/.cache/nxlua/venv/bin/python scripts/live_scenario.py --frames 600 --rate 100

What a client saw is judged with one rule: the stacker commits a frame's data before it
marks it stored, so a status read BEFORE a later look at the data's shape never vouches
for a frame beyond that shape ("status ahead of data" otherwise), and the pixels of a
frame the status vouches for are its source's. Every poll reads the status, then asks
for the data's shape again and reads the newest stored frame: the nx.remote client
follows the file as docs/remote.md says (its two fields found once, `refresh()` before
each read, and between polls it waits for the file to change with `r:wait`), h5pyd
opens the file anew for the status and again for the data, every 50 ms (it has no way
to wait for a change).

Timestamps (all wall clock, one machine): `appear` when the detector renamed the file
into the folder; `commit` the time of its frames.ready event in the journal (the
stacker stamps it right after the flush that committed the frame); `remote` when the
first poll (either poller) whose status showed the frame stored had the newest stored
frame's bytes in hand (that read then verified against its source); `handler` when the
latency macro's handler ran. Each latency from the frame file is reported, and each
reader's part after the commit, to tell the stacker's share of the time from the reader's.

The detector stands for a machine of its own (a Pilatus DCU writes over the network):
when allowed (root), its process (and its session, see below) runs at nice -10 so that
it keeps its rate whatever nxlua's processes do; otherwise it shares the CPU with them
and may fall behind its rate.

Every process is started in a session of its own, as services are: with the kernel's
sched_autogroup the CPU is shared between sessions first. `nxlua serve` and `nxlua
macros` lower their own session's share at start (their default `--nice 10`,
docs/stacking.md "Who gets the CPU on a shared machine"); the clients keep theirs.
"""
import argparse
import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "scripts" / "examples" / "macros"
DATA = "entry/instrument/detector/data"
STATUS = "entry/stacking/frame_status"
USER, PASSWORD = "live", "live-scenario-pw"
GOAL_P99_MS = 100.0
MACROS = ("frame_sum_max", "intensity_monitor", "saturation_alert", "live_latency")

# Messages of reads that were cut off (nx.remote after its retries, h5pyd/requests/urllib3).
CUTOFF = re.compile(r"stream ended at an unexpected time|IncompleteRead|Connection broken|ChunkedEncodingError|"
                    r"reset in the middle|ProtocolError|bytes for an array of|Response ended prematurely", re.I)
OUT_OF_BOUNDS = re.compile(r"out of bounds|out of range", re.I)
NOT_YET = re.compile(r"404|not found|no such (domain|file)|does not exist|cannot open", re.I)


def cache_dir():
    d = pathlib.Path.home() / ".cache/nxlua/bench"
    d.mkdir(parents=True, exist_ok=True)
    return d


# ---------------------------------------------------------------- frames

def frame_name(i):
    """The file of frame index i (frames are numbered from 1, so index = number - 1)."""
    return f"scan_{i + 1:05d}.cbf"


def make_frames(nxlua, count, modules=None, folder=None):
    """`count` synthetic Pilatus CBFs (byte offset), `scan_00001.cbf` on, written by nxlua
    (detector.synthetic, detector.write as scripts/bench.py's stack frames). Full 2M
    frames unless `modules` = (columns, rows) of modules. Without `folder` they are kept
    in the bench cache, and a complete cached set of 2M frames at least as long is reused
    (bench.py's stack_frames_1000 are the same frames). Returns the folder."""
    if folder is None:
        if modules is None:
            for d in sorted(cache_dir().glob("stack_frames_*")):
                m = re.fullmatch(r"stack_frames_(\d+)", d.name)
                if m and int(m.group(1)) >= count and (d / ".complete").exists():
                    return d
        tag = "" if modules is None else f"_{modules[0]}x{modules[1]}"
        folder = cache_dir() / f"live_frames_{count}{tag}"
    folder = pathlib.Path(folder)
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    opts = "seed = i, frame = i" + ("" if modules is None else f", modules = {{{modules[0]}, {modules[1]}}}, spots = 20")
    subprocess.run([str(nxlua), "-e", f"""
        for i = 1, {count} do
          local f, h = detector.synthetic{{{opts}}}
          detector.write(string.format("{folder}/scan_%05d.cbf", i), f, h)
        end"""], check=True, timeout=1800)
    done.write_text("")
    return folder


def detector_main(made, watched, count, rate, log):
    """The detector: frame i is copied under a temporary dot name and renamed into the
    watched folder at t0 + i / rate; each rename's time goes to the log ("i time")."""
    made, watched = pathlib.Path(made), pathlib.Path(watched)
    names = [frame_name(i) for i in range(count)]
    try:
        os.nice(-10)  # a detector has a machine of its own (see the module's docstring)
        # every process here leads its own session, and sched_autogroup shares the CPU
        # between sessions before nice counts: the session's share is raised too
        pathlib.Path("/proc/self/autogroup").write_text("-10")
    except OSError:
        pass
    with open(log, "w") as out:
        t0 = time.time()
        for i, name in enumerate(names):
            delay = t0 + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            tmp = watched / f".{name}.part"
            shutil.copyfile(made / name, tmp)
            os.rename(tmp, watched / name)
            out.write(f"{i} {time.time():.6f}\n")
            out.flush()


# ---------------------------------------------------------------- clients

LUA_COMMON = r"""
local function exists(p) local f = io.open(p) if f then f:close() return true end return false end
local function clean(m) return (tostring(m):gsub("[\t\r\n]+", " ")) end
-- 0-based ranges "0-41,43" of the stored frames (status 1) and the highest one (-1: none)
local function stored(t)
  local parts, lo, top = {}, nil, -1
  for i = 1, #t + 1 do
    if t[i] == 1 then
      top = i - 1
      if lo == nil then lo = i - 1 end
    elseif lo ~= nil then
      parts[#parts + 1] = (lo == i - 2) and tostring(lo) or (lo .. "-" .. (i - 2))
      lo = nil
    end
  end
  return #parts > 0 and table.concat(parts, ",") or "-", top
end
"""

# nx.remote: one line per poll, "kind  t0  t1  t-read  stored-ranges  top  frames  read-index
# message" (t-read: when the newest stored frame's bytes had arrived; message of an ok
# poll: that frame's sum and maximum, checked against its source's after the run). It
# follows the file as docs/remote.md "Following a live file" says (`interval` "wait"):
# before each poll it waits for the file to change (r:wait, nxlua serve's /nxlua/wait),
# and the wait counts in the poll's t0..t1; with a number of seconds as `interval` it polls
# that often instead. Its fields are found once; a wait that saw a change brings their new
# status and shape (r:wait's fields), else they are `refresh()`ed before each read.
REMOTE_POLLER = LUA_COMMON + r"""
local url, user, domain, log, stop, interval = ...
local follow = interval == "wait"
interval = tonumber(interval) or 0.05
local r = nx.remote(url, {user = user, timeout = 120})
local out = assert(io.open(log, "w"))
local status, d   -- the stack's fields, found once the file exists (again after an error)
local version     -- the file's version when the last poll started (r:wait)
while not exists(stop) do
  local t0 = nxlua.time()
  local fresh = false   -- the fields came refreshed with the wait
  if follow and version ~= nil then
    -- sleeps until the stacker's next commit (at once if it came during the last poll);
    -- a second at most, so the stop file is seen. The wait is part of the poll's time:
    -- a client waiting through the stacker's restart was served during it.
    -- A change brings the status and the data's shape with it (r:wait's fields), from
    -- the state the new version names: no refresh() of either is then needed.
    local waited, v, changed = pcall(r.wait, r, domain, version, 1, status and {status, d} or nil)
    version = waited and v or nil
    fresh = waited and changed and status ~= nil
  end
  local kind, ranges, top, n, k, msg = "error", "-", -1, -1, -1, ""
  local tread = -1
  local ok, err = pcall(function()
    if follow and version == nil then version = r:wait(domain) end  -- the version now
    if status == nil then
      local f = r:load(domain)
      status, d = f.entry.stacking.frame_status, f.entry.instrument.detector.data
    end
    if not fresh then status:refresh() end
    local st = status:read():totable()   -- the status first
    ranges, top = stored(st)
    if not fresh then d:refresh() end    -- then the data's shape, asked again
    n = d.shape[1]
    if top < 0 then kind = "empty"; return end
    if top >= n then
      kind = "inconsistent"
      msg = string.format("status says frame %d is stored, the data loaded after it has %d frames", top, n)
      return
    end
    k = top
    local a = d[k]
    tread = nxlua.time()
    -- the frame's sum and maximum, checked against its source's after the run: a CBF
    -- decoded here would delay the next read by more than the read takes (h5pyd's
    -- client and the final file compare every pixel)
    kind, msg = "ok", string.format("%d %d", a:sum(), a:max())
  end)
  if not ok then kind = "error"; msg = clean(err); status = nil; version = nil end
  local t1 = nxlua.time()
  out:write(string.format("%s\t%.6f\t%.6f\t%.6f\t%s\t%d\t%d\t%d\t%s\n", kind, t0, t1, tread, ranges, top, n, k, msg))
  out:flush()
  if not follow then
    local left = interval - (nxlua.time() - t0)
    if left > 0 then nxlua.sleep(left) end
  elseif version == nil then
    nxlua.sleep(interval)  -- the file is not there yet, or the last poll failed
  end
end
out:close()
"""

# Runs on the server: the status first, then the data's shape and a per-frame sum of the
# whole stack (every frame decompressed: the load an evaluation puts on the server).
EVAL_CODE = r"""
local args = ...
local f = nx.load(args.path)
local status = f.entry.stacking.frame_status:read()
local d = f.entry.instrument.detector.data
local n = d.shape[1]
local sums = nil
if n > 0 then sums = d:sum({1, 2}) end
return {status = status, n = n, sums = sums}
"""

# r:eval in a loop: "kind  t0  t1  t1  stored-ranges  top  frames  -1  sums-or-message".
EVAL_POLLER = LUA_COMMON + r"""
local url, user, domain, log, stop, code = ...
local r = nx.remote(url, {user = user, timeout = 300})
local out = assert(io.open(log, "w"))
while not exists(stop) do
  local t0 = nxlua.time()
  local ok, res = pcall(r.eval, r, code, {path = domain})
  local kind, ranges, top, n, msg = "error", "-", -1, -1, ""
  if ok then
    ranges, top = stored(res.status)
    n = res.n
    if top >= n then
      kind = "inconsistent"
      msg = string.format("status says frame %d is stored, the data read after it has %d frames", top, n)
    else
      kind = top < 0 and "empty" or "ok"
      local s = {}
      for i, v in ipairs(res.sums or {}) do s[i] = string.format("%d", v) end
      msg = table.concat(s, ",")
    end
  else
    msg = clean(res)
  end
  local t1 = nxlua.time()
  out:write(string.format("%s\t%.6f\t%.6f\t%.6f\t%s\t%d\t%d\t-1\t%s\n", kind, t0, t1, t1, ranges, top, n, msg))
  out:flush()
  nxlua.sleep(0.05)
end
out:close()
"""

LATENCY_MACRO = r"""
-- the time each frame's frames.ready handler ran: "index handler-time event-time seq attempt recovered"
local out = OUT
on("frames.ready", "latency", function(e)
  local t = nxlua.time()
  local f = assert(io.open(out, "a"))
  for i = e.first, e.stop - 1 do
    f:write(string.format("%d %.6f %.6f %d %d %d\n", i, t, e.time, e.seq, e.attempt, e.recovered and 1 or 0))
  end
  f:close()
end)
"""


def h5pyd_poller_main(url, domain, made, log, stop, interval):
    """h5pyd 1.0 cannot follow a growing file (no swmr, refresh() sees nothing): the file
    is opened anew for the status, and again for the shape and the newest stored frame."""
    import h5pyd
    import numpy as np
    kw = dict(endpoint=url, username=USER, password=PASSWORD)

    def stored(st):
        idx = np.flatnonzero(st == 1)
        if idx.size == 0:
            return "-", -1
        breaks = np.flatnonzero(np.diff(idx) != 1)
        starts = np.concatenate(([idx[0]], idx[breaks + 1]))
        ends = np.concatenate((idx[breaks], [idx[-1]]))
        return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in zip(starts, ends)), int(idx[-1])

    with open(log, "w") as out:
        while not os.path.exists(stop):
            t0 = time.time()
            kind, ranges, top, n, k, msg = "error", "-", -1, -1, -1, ""
            tread = -1.0
            try:
                with h5pyd.File(domain, "r", **kw) as f:
                    ranges, top = stored(f[STATUS][...])
                with h5pyd.File(domain, "r", **kw) as f:
                    d = f[DATA]
                    n = d.shape[0]
                    if top < 0:
                        kind = "empty"
                    elif top >= n:
                        kind = "inconsistent"
                        msg = f"status says frame {top} is stored, the data opened after it has {n} frames"
                    else:
                        k = top
                        a = d[k]
                        tread = time.time()
                        # every pixel's bytes in a CRC-32, checked against the source's
                        # after the run: decoding the source CBF here (fabio) kept each
                        # poll longer than its 50 ms (295 polls in a run, now 330-440)
                        kind, msg = "ok", f"{a.dtype.str} {'x'.join(map(str, a.shape))} {zlib.crc32(np.ascontiguousarray(a))}"
            except Exception as e:  # every failure a client sees is recorded
                kind, msg = "error", f"{type(e).__name__}: {e}"
            t1 = time.time()
            msg = re.sub(r"[\t\r\n]+", " ", msg)
            out.write(f"{kind}\t{t0:.6f}\t{t1:.6f}\t{tread:.6f}\t{ranges}\t{top}\t{n}\t{k}\t{msg}\n")
            out.flush()
            left = interval - (time.time() - t0)
            if left > 0:
                time.sleep(left)


def pixel_digest(src, seen):
    """True when `seen` ("dtype shape crc32" of a frame a client read) is the source
    array's, else what differs."""
    import numpy as np
    dtype, shape, crc = seen.split()
    if "x".join(map(str, src.shape)) != shape:
        return f"shape {shape}, source {'x'.join(map(str, src.shape))}"
    as_read = src.astype(np.dtype(dtype))
    if not np.array_equal(as_read, src):
        return f"dtype {dtype} cannot hold the source's {src.dtype} values"
    ok = zlib.crc32(np.ascontiguousarray(as_read)) == int(crc)
    return True if ok else "CRC-32 of the pixels differs from the source's"


def read_polls(path):
    polls = []
    if not pathlib.Path(path).exists():
        return polls
    for line in pathlib.Path(path).read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 9:
            continue  # a line being written when read
        kind, t0, t1, tread, ranges, top, n, k, msg = parts[:8] + ["\t".join(parts[8:])]
        polls.append(dict(kind=kind, t0=float(t0), t1=float(t1), tread=float(tread), ranges=ranges, top=int(top),
                          n=int(n), k=int(k), msg=msg))
    return polls


def expand(ranges):
    out = set()
    if ranges in ("-", ""):
        return out
    for part in ranges.split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


# ---------------------------------------------------------------- processes

def cpu_seconds(pid):
    """User + system CPU seconds of a process so far (None once it is gone)."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class Sampled:
    """A process whose CPU time is sampled every 0.1 s (see run's sample_cpu)."""
    def __init__(self, pid):
        self.pid = pid
        self.cpu_s = 0.0  # user + system CPU seconds, last sampled (kept when it has ended)
        self.cpu_samples = []  # (wall time, cpu_s)

    def sample_cpu(self):
        cpu = cpu_seconds(self.pid)
        if cpu is not None:
            self.cpu_s = cpu
            self.cpu_samples.append((time.time(), cpu))

    def cpu_between(self, t0, t1):
        """CPU seconds used between wall times t0 and t1."""
        def at(t):
            before = [c for s, c in self.cpu_samples if s <= t]
            return before[-1] if before else 0.0
        return at(t1) - at(t0)


def children_of(pid):
    r = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(x) for x in r.stdout.split()]


class Proc(Sampled):
    """A child in its own process group, its output in a log file."""

    def __init__(self, name, cmd, logdir, env=None, stdout=None):
        self.name, self.cmd = name, [str(c) for c in cmd]
        self.log_path = pathlib.Path(logdir) / f"{name}.log"
        self.log = open(self.log_path, "a")
        self.p = subprocess.Popen(self.cmd, stdout=stdout or self.log, stderr=self.log, env=env, start_new_session=True)
        self.started = time.time()
        Sampled.__init__(self, self.p.pid)

    def alive(self):
        return self.p.poll() is None

    def send(self, sig):
        try:
            os.killpg(self.p.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Sends `sig` to the group; SIGKILL after `timeout` s. Returns the exit code."""
        self.sample_cpu()
        if self.alive():
            self.send(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.send(signal.SIGKILL)
                self.p.wait(30)
        if not self.log.closed:
            self.log.close()
        return self.p.returncode

    def finish(self, timeout):
        """Waits up to `timeout` s for the process to end by itself, then stops it."""
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        return self.stop(signal.SIGTERM, timeout=30)

    def text(self):
        return self.log_path.read_text(errors="replace")


def start_server(nxlua, folder, users, logdir, env, extra=(), timeout=60):
    proc = Proc("serve", [nxlua, "serve", folder, "--host", "127.0.0.1", "--port", "0", "--users", users,
                          "--allow-eval", "--eval-timeout", "120", *extra], logdir, env=env, stdout=subprocess.PIPE)
    line = [None]

    def read():
        line[0] = proc.p.stdout.readline().decode(errors="replace")
    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    if not line[0] or "listening on port" not in line[0]:
        proc.stop(signal.SIGKILL)
        raise RuntimeError(f"nxlua serve did not start: {line[0]!r}\n{proc.text()[-2000:]}")
    # the rest of stdout is drained, so the server never blocks on a full pipe
    threading.Thread(target=lambda: proc.p.stdout.read(), daemon=True).start()
    return proc, f"http://127.0.0.1:{int(line[0].split()[-1])}"


def journal_events(journal, kind=None):
    """(seq, kind, time, payload) of the journal's events, in order."""
    if not pathlib.Path(journal).exists():
        return []
    c = sqlite3.connect(f"file:{journal}?mode=rw", uri=True, timeout=30)
    try:
        q = "SELECT seq, kind, time, payload FROM events" + (" WHERE kind = ?" if kind else "") + " ORDER BY seq"
        return [(s, k, t, json.loads(p)) for s, k, t, p in c.execute(q, (kind,) if kind else ())]
    except sqlite3.OperationalError:  # the schema is being made
        return []
    finally:
        c.close()


def journal_rows(journal, sql, args=()):
    c = sqlite3.connect(f"file:{journal}?mode=rw", uri=True, timeout=30)
    try:
        return c.execute(sql, args).fetchall()
    finally:
        c.close()


def percentiles(values):
    import numpy as np
    if not values:
        return None
    a = np.asarray(values, dtype=float) * 1e3
    return {"n": int(a.size), "median": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def find_dataset(path, name):
    import h5py
    found = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda p, o: found.append(p) if isinstance(o, h5py.Dataset) and p.split("/")[-1] == name else None)
    return found[0] if found else None


# ---------------------------------------------------------------- the scenario

def run(frames=600, rate=100.0, modules=None, nxlua=None, work=None, frames_dir=None, kill_at=None,
        poll_interval=0.05, follow=True, restart_timeout=60.0, converge_timeout=30.0, macro_timeout=180.0,
        stack_timeout=None, keep=False, log=None, extra=None):
    """Runs the scenario; returns the result dict (see the module's docstring).
    `result["problems"]` lists every correctness problem found (empty: all held);
    timings are reported, never judged here. `follow`: the nx.remote client waits for
    each change (r:wait), else it polls every `poll_interval` s like h5pyd. `extra` adds
    command-line arguments to a process ({"stack": [...], "serve": [...], "macros":
    [...]}), to compare settings."""
    import numpy as np
    log = log or (lambda m: print(f"live: {m}", file=sys.stderr, flush=True))
    nxlua = str(nxlua or os.environ.get("NXLUA_BIN") or ROOT / ".build/release/nxlua")
    kill_at = frames // 2 if kill_at is None else kill_at
    extra = {k: [str(x) for x in v] for k, v in (extra or {}).items()}
    stack_timeout = stack_timeout or (frames / rate + 180)
    t_setup = time.time()
    made = make_frames(nxlua, frames, modules, frames_dir)
    log(f"{frames} frames in {made} ({time.time() - t_setup:.1f} s)")
    own_work = work is None
    work = pathlib.Path(work or tempfile.mkdtemp(prefix="nxlua-live-"))
    watched, data, macros, logs = work / "watched", work / "data", work / "macros", work / "logs"
    for d in (watched, data, macros, logs):
        d.mkdir(parents=True, exist_ok=True)
    journal, stop_file = work / "journal.sqlite", work / "stop-clients"
    out = data / "live.nxs"
    handled_log = work / "handled.txt"
    for m in ("frame_sum_max", "intensity_monitor", "saturation_alert"):
        shutil.copyfile(EXAMPLES / f"{m}.lua", macros / f"{m}.lua")
    (macros / "live_latency.lua").write_text(LATENCY_MACRO.replace("OUT", json.dumps(str(handled_log))))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NXLUA_", "LUA_"))}
    env["NXLUA_PASSWORD"] = PASSWORD
    users = work / "users"
    subprocess.run([nxlua, "serve", "adduser", str(users), USER], input=PASSWORD + "\n", check=True,
                   capture_output=True, text=True, timeout=60, env=env)
    (work / "remote_poller.lua").write_text(REMOTE_POLLER)
    (work / "eval_poller.lua").write_text(EVAL_POLLER)
    # the stacker above the clients, as docs/stacking.md says for a shared machine (a
    # warning in its log and nice 0 where that is not allowed)
    stack_cmd = [nxlua, "stack", "--watch", watched, "--out", out, "--frames", frames, "--journal", journal,
                 "--flush-every", 1, "--quiet", "--nice", -5, *extra.get("stack", [])]
    result = {"frames": frames, "rate": rate, "modules": modules, "binary": nxlua, "work": str(work), "follow": follow,
              "frame_shape": None, "problems": []}
    problems = result["problems"]
    procs, stackers = {}, []
    sampling = threading.Event()

    workers = {}  # serve's evaluation workers, by pid
    batch = {}    # the macro runner's batch process (its heavy macros), by pid

    def sample_cpu():  # every process's CPU time, for "where does the time go"
        rounds = 0
        while not sampling.wait(0.1):
            rounds += 1
            if rounds % 10 == 1:  # new workers are rare: a look a second
                for name, found in (("serve", workers), ("macros", batch)):
                    if name in procs:
                        for pid in children_of(procs[name].p.pid):
                            found.setdefault(pid, Sampled(pid))
            for proc in list(procs.values()) + list(stackers) + list(workers.values()) + list(batch.values()):
                proc.sample_cpu()
    threading.Thread(target=sample_cpu, daemon=True).start()
    restart = {"kill_at_frame": None, "kill_time": None, "attempts": 0, "refusals": [], "restarted_time": None,
               "first_commit_after": None, "gap_s": None, "readers_alive": None, "polls_during_gap": {}}
    result["restart"] = restart
    domain = "/live.nxs"
    try:
        server, url = start_server(nxlua, data, users, logs, env, extra.get("serve", []))
        procs["serve"] = server
        procs["macros"] = Proc("macros", [nxlua, "macros", macros, "--journal", journal, *extra.get("macros", [])],
                               logs, env=env)
        wait = time.time() + 60
        while not journal.exists() and time.time() < wait:  # the runner made the journal
            time.sleep(0.05)
        procs["remote"] = Proc("remote", [nxlua, work / "remote_poller.lua", url, USER, domain,
                                          logs / "remote.polls", stop_file, "wait" if follow else poll_interval],
                               logs, env=env)
        procs["h5pyd"] = Proc("h5pyd", [sys.executable, __file__, "--h5pyd-poller", url, domain, made,
                                        logs / "h5pyd.polls", stop_file, poll_interval], logs,
                              # its numpy needs no BLAS threads (OpenBLAS starts one per core,
                              # and they spin after each call: CPU taken from nxlua's processes)
                              env=dict(env, OPENBLAS_NUM_THREADS="1"))
        procs["eval"] = Proc("eval", [nxlua, work / "eval_poller.lua", url, USER, domain, logs / "eval.polls",
                                      stop_file, EVAL_CODE], logs, env=env)
        stackers.append(Proc("stack-1", stack_cmd, logs, env=env))
        time.sleep(1.0)  # everyone is up and idle
        detector_log = logs / "detector.times"
        procs["detector"] = Proc("detector", [sys.executable, __file__, "--detector", made, watched, frames, rate,
                                              detector_log], logs, env=env)

        def renamed():
            try:
                return len(detector_log.read_text().splitlines())
            except FileNotFoundError:
                return 0

        # kill the stacker once about half the frames are in the folder
        deadline = time.time() + stack_timeout
        while renamed() < kill_at and time.time() < deadline:
            if not procs["detector"].alive() and renamed() < kill_at:
                raise RuntimeError("the detector ended early: " + procs["detector"].text()[-2000:])
            time.sleep(0.005)
        restart["kill_at_frame"] = renamed()
        stackers[-1].send(signal.SIGKILL)
        restart["kill_time"] = time.time()
        stackers[-1].p.wait(30)
        stackers[-1].log.close()
        # started again with the same command while the readers read: retried (and
        # every refusal recorded) until one keeps running or the stack is complete
        restart_deadline = time.time() + restart_timeout
        while True:
            restart["attempts"] += 1
            s = Proc(f"stack-{len(stackers) + 1}", stack_cmd, logs, env=env)
            stackers.append(s)
            if restart["restarted_time"] is None:
                restart["restarted_time"] = time.time()
            try:
                s.p.wait(1.0)
            except subprocess.TimeoutExpired:
                break  # running
            if s.p.returncode == 0:
                break  # finished the stack in under a second
            restart["refusals"].append(f"exit {s.p.returncode}: " + s.text().strip()[-500:])
            if time.time() > restart_deadline:
                problems.append(f"restart: the stacker was refused {len(restart['refusals'])} times in "
                                f"{restart_timeout:.0f} s; last: {restart['refusals'][-1]}")
                break
            time.sleep(0.2)
        restart["readers_alive"] = {n: procs[n].alive() for n in ("remote", "h5pyd", "eval", "serve", "macros")}
        if restart["refusals"]:
            problems.append(f"restart: refused {len(restart['refusals'])} time(s) before it ran "
                            f"(first: {restart['refusals'][0][:300]})")

        procs["detector"].p.wait(max(1.0, deadline - time.time()))
        last = stackers[-1]
        try:
            last.p.wait(max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            problems.append(f"the restarted stacker did not finish within {stack_timeout:.0f} s: "
                            + last.text()[-1000:])
        stack_end = time.time()
        result["stacker_exit"] = last.p.returncode
        if last.p.returncode != 0:
            problems.append(f"the restarted stacker exited {last.p.returncode}: {last.text()[-1500:]}")

        # the clients go on until they see the whole stack (bounded); an evaluation must
        # have started after the stacker ended
        def converged(name):
            for p in read_polls(logs / f"{name}.polls"):
                if p["kind"] == "ok" and p["top"] == frames - 1 and p["n"] == frames and \
                        len(expand(p["ranges"])) == frames and (name != "eval" or p["t0"] > stack_end):
                    return True
            return False
        conv = {}
        end = stack_end + converge_timeout

        def limit(name):
            if name != "eval":
                return end
            # the evaluation in flight when the stack ended finishes, and one that starts
            # after it reads all the frames: twice the longest so far (they grow with the
            # stack; re-read while waiting, as the one in flight ends)
            longest = max((p["t1"] - p["t0"] for p in read_polls(logs / "eval.polls")), default=0)
            return end + min(150.0, 2 * longest)
        for name in ("remote", "h5pyd", "eval"):
            while not converged(name) and time.time() < limit(name) and procs[name].alive():
                time.sleep(0.05)
            conv[name] = converged(name)
            if not conv[name]:
                last_poll = (read_polls(logs / f"{name}.polls") or [{}])[-1]
                problems.append(f"{name}: did not see all {frames} frames stored and readable within "
                                f"{limit(name) - stack_end:.0f} s of the stack's end (last poll: {last_poll})")
        result["converged"] = conv
        result["converge_s"] = {n: None for n in conv}
        for name in conv:
            for p in read_polls(logs / f"{name}.polls"):
                if p["kind"] == "ok" and p["n"] == frames and len(expand(p["ranges"])) == frames:
                    result["converge_s"][name] = p["t1"] - stack_end
                    break
        stop_file.write_text("")

        # the macros catch up with the run's last event (bounded), then stop on SIGTERM
        last_seq = max((s for s, *_ in journal_events(journal)), default=0)
        macro_deadline = time.time() + macro_timeout
        while time.time() < macro_deadline and procs["macros"].alive():
            cursors = dict(journal_rows(journal, "SELECT macro, seq FROM cursors"))
            if all(cursors.get(m, -1) >= last_seq for m in MACROS):
                break
            time.sleep(0.1)
        cursors = dict(journal_rows(journal, "SELECT macro, seq FROM cursors"))
        behind = {m: cursors.get(m) for m in MACROS if cursors.get(m, -1) < last_seq}
        if behind:
            problems.append(f"macros not caught up with event {last_seq} within {macro_timeout:.0f} s: {behind}")
    finally:
        stop_file.write_text("")
        codes = {}
        for name in ("remote", "h5pyd", "eval", "detector"):  # they end on the stop file
            if name in procs:
                codes[name] = procs[name].finish(150 if name == "eval" else 30)
        for s in stackers:
            if s.alive():
                s.stop(signal.SIGKILL)
            elif not s.log.closed:
                s.log.close()
        for name in ("macros", "serve"):
            if name in procs:
                codes[name] = procs[name].stop(signal.SIGTERM, timeout=60)
        result["exit_codes"] = codes
        sampling.set()
        result["cpu_s"] = {name: round(proc.cpu_s, 2) for name, proc in procs.items()}
        result["cpu_s"]["stack"] = round(sum(s.cpu_s for s in stackers), 2)
        result["cpu_s"]["eval workers"] = round(sum(w.cpu_s for w in workers.values()), 2)
        result["cpu_s"]["macros batch"] = round(sum(w.cpu_s for w in batch.values()), 2)
    for name in ("remote", "h5pyd", "eval"):
        if codes.get(name) not in (0, None):
            problems.append(f"{name} client exited {codes[name]}: {procs[name].text()[-1500:]}")
    for name in ("macros", "serve"):
        text = procs[name].text()
        bad = [ln for ln in text.splitlines() if re.search(r"AddressSanitizer|runtime error|malloc\(\)|double free|"
                                                             r"corrupted|Segmentation|Fatal error|HDF5-DIAG", ln)]
        if codes.get(name) != 0 or bad:
            problems.append(f"nxlua {name} exited {codes.get(name)} on SIGTERM" + (f": {bad[:5]}" if bad else ""))

    # ---------------------------------------------------------- what happened
    appear = {}
    for line in (logs / "detector.times").read_text().splitlines():
        i, t = line.split()
        appear[int(i)] = float(t)
    if len(appear) != frames:
        problems.append(f"the detector renamed {len(appear)} of {frames} frames")
    ts = sorted(appear.values())
    result["detector_rate"] = (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 else None

    ready = journal_events(journal, "frames.ready")
    commit, announced, recovered = {}, {}, set()
    for seq, _, t, p in ready:
        for i in range(p["first"], p["stop"]):
            announced[i] = announced.get(i, 0) + 1
            commit.setdefault(i, t)
            if p.get("recovered"):
                recovered.add(i)
    never = sorted(set(range(frames)) - set(announced))
    twice = sorted(i for i, c in announced.items() if c > 1)
    result["events"] = {"frames_ready": len(ready), "frames_announced": len(announced), "never": never,
                        "more_than_once": twice, "recovered": sorted(recovered),
                        "kinds": [k for _, k, _, p in journal_events(journal) if k != "frames.ready"],
                        "resume_marked": any(k == "stream.open" and p.get("resumed") for _, k, _, p in
                                             journal_events(journal))}
    if never:
        problems.append(f"journal: {len(never)} frames never announced by frames.ready: {never[:20]}")
    if twice:
        problems.append(f"journal: {len(twice)} frames announced more than once: {twice[:20]}")
    kill_time = restart["kill_time"]
    if kill_time:
        after = [t for _, _, t, _ in ready if t > kill_time]
        restart["first_commit_after"] = min(after) if after else None
        restart["gap_s"] = (min(after) - kill_time) if after else None
        if not after:
            problems.append("restart: no frames.ready after the kill")

    # latency macro: each frame handled exactly once, at attempt 1
    handled, handled_count = {}, {}
    if handled_log.exists():
        for line in handled_log.read_text().splitlines():
            i, t, _, _, attempt, _ = line.split()
            i = int(i)
            handled_count[i] = handled_count.get(i, 0) + 1
            handled.setdefault(i, float(t))
            if int(attempt) != 1:
                problems.append(f"latency macro: frame {i} delivered with attempt {attempt}")
    not_handled = sorted(set(range(frames)) - set(handled))
    handled_twice = sorted(i for i, c in handled_count.items() if c > 1)
    if not_handled:
        problems.append(f"latency macro: {len(not_handled)} frames never handled: {not_handled[:20]}")
    if handled_twice:
        problems.append(f"latency macro: {len(handled_twice)} frames handled more than once: {handled_twice[:20]}")

    # every macro: one record per frames.ready, done at the first attempt
    ready_seqs = {s: t for s, _, t, _ in ready}
    macro_report = {}
    for m in MACROS:
        rows = journal_rows(journal, "SELECT seq, status, attempts, error, updated FROM records WHERE macro = ?", (m,))
        recs = {s: (st, a, e, u) for s, st, a, e, u in rows if s in ready_seqs}
        missing = sorted(set(ready_seqs) - set(recs))
        not_done = {s: (st, e) for s, (st, a, e, u) in recs.items() if st != "done"}
        retried = {s: a for s, (st, a, e, u) in recs.items() if a != 1}
        lag = [u - ready_seqs[s] for s, (st, a, e, u) in recs.items()]
        macro_report[m] = {"handled": len(recs) - len(not_done), "missing": missing, "not_done": not_done,
                           "attempts_not_1": retried, "max_lag_s": max(lag) if lag else None,
                           "median_lag_s": float(np.median(lag)) if lag else None}
        if missing:
            problems.append(f"macro {m}: {len(missing)} frames.ready events without a record: {missing[:10]}")
        if not_done:
            problems.append(f"macro {m}: {len(not_done)} frames.ready not done: {list(not_done.items())[:3]}")
        if retried:
            problems.append(f"macro {m}: {len(retried)} frames.ready delivered more than once: {list(retried.items())[:5]}")
    result["macros"] = macro_report

    # the clients: every poll judged
    clients = {}
    remote_seen = {"remote": {}, "h5pyd": {}}
    gap_end = restart["first_commit_after"] or (kill_time or 0)
    for name in ("remote", "h5pyd", "eval"):
        polls = read_polls(logs / f"{name}.polls")
        first_seen = next((i for i, p in enumerate(polls) if p["kind"] != "error" or not NOT_YET.search(p["msg"])), None)
        c = {"polls": len(polls), "ok": 0, "empty": 0, "waiting": 0, "errors": 0, "cutoff": 0, "inconsistent": 0,
             "out_of_bounds": 0, "mismatch": 0, "wrong_sum": 0, "messages": {}, "polls_during_gap": 0}
        for i, p in enumerate(polls):
            if kill_time and p["t1"] >= kill_time and p["t0"] <= gap_end:  # a poll overlapping the downtime
                c["polls_during_gap"] += 1
            kind = p["kind"]
            if kind == "error" and (first_seen is None or i < first_seen) and NOT_YET.search(p["msg"]):
                c["waiting"] += 1  # the stack does not exist yet
                continue
            if kind == "ok":
                c["ok"] += 1
                if name == "eval":
                    sums = [int(x) for x in p["msg"].split(",")] if p["msg"] else []
                    p["sums"] = sums
                else:
                    seen = remote_seen[name]
                    for j in expand(p["ranges"]):
                        seen.setdefault(j, p["tread"])
                continue
            if kind == "empty":
                c["empty"] += 1
                continue
            key = kind
            if kind == "error":
                c["errors"] += 1
                if CUTOFF.search(p["msg"]):
                    c["cutoff"] += 1
                    key = "cutoff"
                elif OUT_OF_BOUNDS.search(p["msg"]):
                    c["out_of_bounds"] += 1
                    key = "out_of_bounds"
            else:
                c[kind] += 1
            msg = re.sub(r"\d+", "N", p["msg"])[:200]
            c["messages"].setdefault(f"{key}: {msg}", [0, p["msg"][:400]])[0] += 1
        c["polls_during_gap"] = c["polls_during_gap"]
        restart["polls_during_gap"][name] = c["polls_during_gap"]
        clients[name] = c
        c["polls_list"] = polls
    result["clients"] = clients

    # ---------------------------------------------------------- the final file
    import fabio
    import h5py
    import hdf5plugin  # noqa: F401  (bitshuffle + LZ4)
    totals, maxima, identical, differ = {}, {}, 0, []
    # the frames h5pyd's client read, by the dtype, shape and CRC-32 it saw
    h5pyd_read, h5pyd_digest = {}, {}
    for p in clients["h5pyd"]["polls_list"]:
        if p["kind"] == "ok":
            h5pyd_read.setdefault(p["k"], set()).add(p["msg"])
    ssum = smax = None
    intensity = {}
    with h5py.File(out, "r") as f:
        d, st = f[DATA], f[STATUS][:]
        result["frame_shape"] = list(d.shape[1:])
        if d.shape[0] != frames or not (st == 1).all():
            problems.append(f"final file: {d.shape[0]} frames, {int((st == 1).sum())} stored of {frames}")
        for i in range(min(frames, d.shape[0])):
            src = fabio.open(str(made / frame_name(i))).data
            a = d[i]
            if np.array_equal(a, src):
                identical += 1
            else:
                differ.append(i)
            for digest in h5pyd_read.get(i, ()):
                h5pyd_digest[(i, digest)] = pixel_digest(src, digest)
            totals[i] = int(src.sum(dtype=np.int64))
            maxima[i] = int(src.max())
            v = src.astype(np.float64)
            ssum = v.copy() if ssum is None else ssum + v
            smax = v if smax is None else np.maximum(smax, v)
            intensity[i] = float(np.maximum(v, 0).sum())
    result["final"] = {"identical": identical, "differ": differ}
    if differ:
        problems.append(f"final file: {len(differ)} frames differ from their sources: {differ[:20]}")

    # the nx.remote client's frames: sum and maximum as its source's
    for p in clients["remote"]["polls_list"]:
        if p["kind"] == "ok":
            got = [int(x) for x in p["msg"].split()]
            if got != [totals.get(p["k"]), maxima.get(p["k"])]:
                clients["remote"]["mismatch"] += 1
                clients["remote"]["messages"].setdefault("mismatch: sum and maximum differ from the source's", [0, ""])
                clients["remote"]["messages"]["mismatch: sum and maximum differ from the source's"][0] += 1
                clients["remote"]["messages"]["mismatch: sum and maximum differ from the source's"][1] = \
                    f"frame {p['k']}: read {got}, source {[totals.get(p['k']), maxima.get(p['k'])]} at t={p['t0']:.3f}"
    # h5pyd's frames: every pixel as its source's
    for p in clients["h5pyd"]["polls_list"]:
        if p["kind"] == "ok" and h5pyd_digest.get((p["k"], p["msg"])) is not True:
            c = clients["h5pyd"]
            c["mismatch"] += 1
            key = "mismatch: pixels differ from the source's"
            c["messages"].setdefault(key, [0, ""])[0] += 1
            c["messages"][key][1] = f"frame {p['k']}: {h5pyd_digest.get((p['k'], p['msg']), 'not in the final file')} at t={p['t0']:.3f}"
    # the evaluations' per-frame sums of the frames their status vouched for
    for p in clients["eval"]["polls_list"]:
        if p["kind"] == "ok":
            wrong = [j for j in expand(p["ranges"]) if j >= len(p["sums"]) or p["sums"][j] != totals.get(j)]
            if wrong:
                clients["eval"]["wrong_sum"] += 1
                clients["eval"]["messages"].setdefault("wrong_sum: per-frame sums differ from the sources", [0, ""])[0] += 1
                clients["eval"]["messages"]["wrong_sum: per-frame sums differ from the sources"][1] = \
                    f"frames {wrong[:10]} at t={p['t0']:.3f}"
    for name, c in clients.items():
        bad = c["errors"] + c["inconsistent"] + c["mismatch"] + c["wrong_sum"]
        if bad:
            problems.append(f"{name}: {bad} bad polls of {c['polls']} (errors {c['errors']}, of which cut off "
                            f"{c['cutoff']}, out of bounds {c['out_of_bounds']}; status ahead of data "
                            f"{c['inconsistent']}; wrong pixels {c['mismatch']}; wrong sums {c['wrong_sum']}): "
                            + "; ".join(f"{n} x {k} [{ex}]" for k, (n, ex) in list(c["messages"].items())[:4]))
        if c["ok"] == 0:
            problems.append(f"{name}: no successful poll")
        if kill_time and c["polls_during_gap"] == 0 and name != "eval":
            problems.append(f"{name}: no poll while the stacker was down (kill to first commit after restart)")
    if restart["readers_alive"] and not all(restart["readers_alive"].values()):
        problems.append(f"restart: readers not all running at the restart: {restart['readers_alive']}")

    # the example macros' outputs against numpy
    macro_out = {}
    try:
        summax, inten = data / "live_summax.nxs", data / "live_intensity.nxs"
        with h5py.File(summax, "r") as f:
            s = f[find_dataset(summax, "sum")][...]
            mx = f[find_dataset(summax, "maximum")][...]
        macro_out["summax_equal"] = bool(np.allclose(s, ssum, rtol=1e-12, atol=0) and np.array_equal(mx, smax))
        with h5py.File(inten, "r") as f:
            tot = f[find_dataset(inten, "total")][...]
        expect = np.array([intensity[i] for i in range(frames)])
        macro_out["intensity_equal"] = bool(tot.shape == expect.shape and np.allclose(tot, expect, rtol=1e-12, atol=0))
    except Exception as e:
        macro_out["error"] = f"{type(e).__name__}: {e}"
    result["macro_outputs"] = macro_out
    if macro_out.get("error") or not macro_out.get("summax_equal") or not macro_out.get("intensity_equal"):
        problems.append(f"example macros' outputs differ from numpy: {macro_out}")

    # ---------------------------------------------------------- latencies
    remote_any = {}
    for name in ("remote", "h5pyd"):
        for j, t in remote_seen[name].items():
            remote_any[j] = min(t, remote_any.get(j, t))
    # frames whose way crossed the stacker's downtime: recovered on resume, or committed
    # after the kill having appeared before the backlog was cleared (the commit of the
    # last frame that appeared before the restarted stacker's first commit)
    crossed = set(recovered)
    if kill_time:
        gap_hi = restart["first_commit_after"] or float("inf")
        piled = [commit.get(i, float("inf")) for i in range(frames) if appear.get(i, float("inf")) <= gap_hi]
        caught_up = max(piled, default=gap_hi)
        restart["caught_up_s"] = caught_up - kill_time if caught_up != float("inf") else None
        crossed |= {i for i in range(frames) if appear.get(i, 0) <= caught_up and commit.get(i, float("inf")) >= kill_time}
    result["frames_crossing_restart"] = len(crossed)

    def lat(seen, steady):
        return [seen[i] - appear[i] for i in range(frames) if i in seen and i in appear
                and not (steady and i in crossed)]
    result["latency_ms"] = {}
    for name, seen in (("commit", commit), ("remote", remote_any), ("remote_nx", remote_seen["remote"]),
                       ("remote_h5pyd", remote_seen["h5pyd"]), ("handler", handled)):
        result["latency_ms"][name] = {"all": percentiles(lat(seen, False)), "steady": percentiles(lat(seen, True)),
                                      "frames": len([i for i in range(frames) if i in seen])}
    # where the time goes: the stacker's part (to the commit), and each reader's after it
    result["after_commit_ms"] = {
        name: percentiles([seen[i] - commit[i] for i in range(frames) if i in seen and i in commit and i not in crossed])
        for name, seen in (("remote_nx", remote_seen["remote"]), ("remote_h5pyd", remote_seen["h5pyd"]),
                           ("handler", handled))}
    if commit and appear:
        result["stack_rate"] = frames / (max(commit.values()) - min(appear.values()))
        result["stack_seconds"] = max(commit.values()) - min(appear.values())
        # what each process used while the stack grew (first frame file to last commit):
        # the clients and macros go on after it, and the whole run's CPU says little of
        # the contention the latencies met
        t0, t1 = min(appear.values()), max(commit.values())
        during = {name: proc.cpu_between(t0, t1) for name, proc in procs.items()}
        during["stack"] = sum(s.cpu_between(t0, t1) for s in stackers)
        during["eval workers"] = sum(w.cpu_between(t0, t1) for w in workers.values())
        during["macros batch"] = sum(w.cpu_between(t0, t1) for w in batch.values())
        result["cpu_s_stacking"] = {n: round(v, 2) for n, v in during.items()}
    for c in clients.values():
        c.pop("polls_list", None)
    result["ok"] = not problems
    if own_work and not keep and result["ok"]:
        shutil.rmtree(work, ignore_errors=True)
        result["work"] = None
    return result


# ---------------------------------------------------------------- report

def fmt_s(v):
    return "-" if v is None else f"{v:.2f} s"


def table(result):
    """The figures next to the goals, as lines of text."""
    lines = []
    r = result
    shape = "x".join(map(str, r.get("frame_shape") or [])) or "?"
    lines.append(f"live scenario: {r['frames']} frames of {shape} at {r['rate']:.0f} frames/s; "
                 f"stacker SIGKILLed at frame {r['restart']['kill_at_frame']} and restarted; latencies leave out "
                 f"the {r.get('frames_crossing_restart', 0)} frames queued behind the restart (see 'all frames')")
    rows = [("figure", "median", "p95", "p99", "max", "goal", "")]

    def ms(v):
        return "-" if v is None else f"{v:.0f} ms"
    for key, label in (("commit", "frame file -> frames.ready commit"),
                       ("remote", "frame file -> pixels read remotely (first poller)"),
                       ("remote_nx", "  through nx.remote"), ("remote_h5pyd", "  through h5pyd"),
                       ("handler", "frame file -> its handler runs")):
        L = r["latency_ms"][key]
        s = L["steady"]
        goal = key != "commit"
        if s:
            met = s["p99"] <= GOAL_P99_MS and L["frames"] == r["frames"]
            rows.append((f"{label} ({L['frames']}/{r['frames']} frames)", ms(s["median"]), ms(s["p95"]), ms(s["p99"]),
                         ms(s["max"]), "p99 <= 100 ms" if goal else "(part of it)",
                         ("met" if met else "MISSED") if goal else ""))
        else:
            rows.append((f"{label} (0 frames)", "-", "-", "-", "-", "p99 <= 100 ms", "MISSED" if goal else ""))
        a = L["all"]
        if a:
            rows.append(("    all frames, the restart included", ms(a["median"]), ms(a["p95"]), ms(a["p99"]),
                         ms(a["max"]), "", ""))
    labels = {"remote_nx": "commit -> pixels read through nx.remote (r:wait)" if r.get("follow", True)
              else "commit -> pixels read through nx.remote (polling)",
              "remote_h5pyd": "commit -> pixels read through h5pyd (polling)", "handler": "commit -> its handler runs"}
    for key, s in (r.get("after_commit_ms") or {}).items():
        if s:
            rows.append((labels[key], ms(s["median"]), ms(s["p95"]), ms(s["p99"]), ms(s["max"]), "", ""))
    widths = [max(len(str(x[i])) for x in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    rs = r["restart"]
    lines.append(f"frames/s: detector wrote {r.get('detector_rate') or 0:.1f}/s (goal {r['rate']:.0f}); the stack "
                 f"committed {r['frames']} frames in {r.get('stack_seconds') or 0:.2f} s = "
                 f"{r.get('stack_rate') or 0:.1f}/s, the restart included")
    gap = rs["gap_s"]
    lines.append(f"restart after SIGKILL: gap {fmt_s(gap)} (kill -> first commit of the new stacker), backlog "
                 f"cleared {fmt_s(rs.get('caught_up_s'))} after the kill, {rs['attempts']} attempt(s), "
                 f"{len(rs['refusals'])} refused; readers running: "
                 f"{all((rs['readers_alive'] or {}).values())}; polls during the gap: {rs['polls_during_gap']}")
    for name, c in r["clients"].items():
        lines.append(f"{name:7s} polls {c['polls']}, ok {c['ok']}, errors {c['errors']} (cut off {c['cutoff']}, "
                     f"out of bounds {c['out_of_bounds']}), status ahead of data {c['inconsistent']}, "
                     f"wrong pixels {c['mismatch']}, wrong sums {c['wrong_sum']}; saw the whole stack "
                     f"{fmt_s(r['converge_s'][name])} after it ended")
        for k, (n, ex) in list(c["messages"].items())[:6]:
            lines.append(f"          {n} x {ex[:220]}")
    for m, rep in r["macros"].items():
        lag = rep["max_lag_s"]
        lines.append(f"macro {m}: {rep['handled']} frames.ready done, lag behind the commit median "
                     f"{(rep['median_lag_s'] or 0):.2f} s, max {'-' if lag is None else f'{lag:.2f}'} s")
    e = r["events"]
    lines.append(f"journal: {e['frames_ready']} frames.ready, {e['frames_announced']}/{r['frames']} frames announced, "
                 f"{len(e['more_than_once'])} more than once, {len(e['recovered'])} recovered on resume; "
                 f"resume marked by a stream.open: {e['resume_marked']}")
    lines.append(f"final file: {r['final']['identical']}/{r['frames']} frames identical to their sources; "
                 f"macro outputs equal to numpy: {r['macro_outputs']}; exits {r['exit_codes']}")
    cpu, during = r.get("cpu_s") or {}, r.get("cpu_s_stacking") or {}
    if during:
        lines.append(f"CPU seconds per process while the stack grew ({r.get('stack_seconds') or 0:.1f} s, "
                     f"{os.cpu_count()} cores): " + ", ".join(f"{n} {v:.1f}" for n, v in during.items())
                     + f"; total {sum(during.values()):.1f}")
    lines.append("CPU seconds per process, whole run: " + ", ".join(f"{n} {v:.1f}" for n, v in cpu.items())
                 + f"; total {sum(cpu.values()):.1f}")
    lines.append("problems: none" if r["ok"] else f"problems ({len(r['problems'])}):")
    lines += [f"  - {p}" for p in r["problems"]]
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--rate", type=float, default=100.0, help="frames per second the detector writes")
    ap.add_argument("--modules", help="smaller frames: COLSxROWS Pilatus modules (default: a full 2M)")
    ap.add_argument("--bin", help="the nxlua binary (default: .build/release/nxlua)")
    ap.add_argument("--work", help="keep everything in this folder (default: a temporary one, removed if all held)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--json", help="write the result dict here")
    ap.add_argument("--remote-poll", action="store_true",
                    help="the nx.remote client polls every 50 ms instead of waiting for each change (r:wait)")
    for name in ("stack", "serve", "macros"):
        ap.add_argument(f"--{name}-args", default="", metavar="ARGS",
                        help=f"more arguments for nxlua {name} (one string, split as a shell would), to compare settings")
    ap.add_argument("--detector", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--h5pyd-poller", nargs=6, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.detector:
        made, watched, count, rate, log = a.detector
        return detector_main(made, watched, int(count), float(rate), log)
    if a.h5pyd_poller:
        url, domain, made, log, stop, interval = a.h5pyd_poller
        return h5pyd_poller_main(url, domain, made, log, stop, float(interval))
    modules = tuple(int(x) for x in a.modules.split("x")) if a.modules else None
    extra = {n: shlex.split(getattr(a, f"{n}_args")) for n in ("stack", "serve", "macros")}
    r = run(frames=a.frames, rate=a.rate, modules=modules, nxlua=a.bin, work=a.work, keep=a.keep, extra=extra,
            follow=not a.remote_poll)
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(r, indent=1, default=str))
    print("\n".join(table(r)))
    if r.get("work"):
        print(f"(logs and files kept in {r['work']})")
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    try:
        if "--detector" not in sys.argv:  # the detector needs the standard library only
            import numpy  # noqa: F401
            import h5pyd  # noqa: F401
    except ImportError:
        venv = pathlib.Path.home() / ".cache/nxlua/venv/bin/python"
        if venv.exists() and pathlib.Path(sys.executable) != venv:
            os.execv(str(venv), [str(venv), __file__, *sys.argv[1:]])
        sys.exit("live_scenario: needs numpy, h5py, hdf5plugin, fabio and h5pyd (scripts/venv scripts/requirements-peers.txt)")
    sys.exit(main())
