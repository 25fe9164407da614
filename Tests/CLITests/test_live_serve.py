"""nxlua serve on files that grow while they are read: every request sees the writer's
last flush, whatever else the server holds open, and a read that started finishes.

HDF5 shares a file opened twice in one process with one metadata cache, and a dataset
opened while another handle has it open shares that handle's shape: in a live run the
REST view stayed at 80 frames while the stack reached 275, for as long as an evaluation
held the file. Evaluations now run in worker processes; these tests keep both paths
honest."""
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time

import h5py
import numpy as np
import pytest
import requests

from conftest import child_pids, thread_nices
from test_serve import BIN, PASSWORD, USER, Server, dataset_id, get, root_id

# An h5py SWMR writer: frame i holds the value i + 1 everywhere. With a go file it waits
# for the reader after each frame (go holds the count it may write up to); without, it
# writes `n` frames every `pause` seconds.
GROWING = textwrap.dedent("""
    import os, sys, time, h5py, numpy as np
    path, n, shape, go, pause = sys.argv[1], int(sys.argv[2]), tuple(map(int, sys.argv[3].split("x"))), sys.argv[4], float(sys.argv[5])
    f = h5py.File(path, "w", libver="latest")
    d = f.create_dataset("frames", shape=(0,) + shape, maxshape=(None,) + shape, dtype="i4", chunks=(1,) + shape)
    f.swmr_mode = True
    for i in range(n):
        if go != "-":
            while not os.path.exists(go) or int(open(go).read().strip() or 0) < i + 1:
                time.sleep(0.005)
        d.resize((i + 1,) + shape)
        d[i] = i + 1
        d.flush()
        print(i + 1, flush=True)
        time.sleep(pause)
    f.close()
""")


def served_folder(base):
    """An empty folder to serve and a users file with the test user: (folder, users)."""
    root = base / "data"
    root.mkdir()
    users = base / "users"
    r = subprocess.run([BIN, "serve", "adduser", str(users), USER], input=PASSWORD + "\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return root, users


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    base = tmp_path_factory.mktemp("live_serve")
    root, users = served_folder(base)
    s = Server(root, users, "--allow-eval", "--eval-timeout", "120", log=base / "serve.log")
    yield {"root": root, "base": base, "server": s}
    assert s.stop() == 0


def writer(live, name, n, shape, go="-", pause=0.0):
    script = live["base"] / "growing.py"
    script.write_text(GROWING)
    return subprocess.Popen([sys.executable, str(script), str(live["root"] / name), str(n),
                             "x".join(map(str, shape)), str(go), str(pause)], stdout=subprocess.PIPE, text=True)


def evaluate(server, code, args):
    return requests.post(server.url + "/nxlua/eval", json={"code": code, "args": args},
                         auth=(USER, PASSWORD), timeout=120)


def set_flag(root, value):
    """The evaluation below waits for this: a tiny file replaced in one rename."""
    tmp = root / "flag.tmp"
    with h5py.File(tmp, "w") as f:
        f["go"] = np.int32(value)
    tmp.rename(root / "flag.h5")


# Holds the growing file open (its dataset too) until the flag says go, as a long
# reduction over a stack does; returns the number of frames it saw at its start.
HOLDING_EVAL = """
local a = ...
local f = nx.load(a.path)
local d = f.frames
local seen = d.shape[1]
local first = d[0]:sum()
while nx.load(a.flag).go:read() == 0 do end
return seen, first
"""


def test_rest_and_evaluations_follow_a_growing_file_while_an_evaluation_holds_it(live):
    server, root = live["server"], live["root"]
    go = live["base"] / "go_hold"
    go.write_text("1")
    set_flag(root, 0)
    w = writer(live, "held.h5", 4, (8, 8), go=go)
    result = {}
    try:
        assert w.stdout.readline().strip() == "1"
        holder = threading.Thread(target=lambda: result.setdefault(
            "r", evaluate(server, HOLDING_EVAL, {"path": "/held.h5", "flag": "/flag.h5"})))
        holder.start()
        # the evaluation has the file open and saw one frame once it polls the flag
        wait_for(lambda: any(f.endswith("/flag.h5") for p in workers(server.proc.pid) for f in open_files(p)),
                 "the holding evaluation to poll its flag", 120)
        did = dataset_id(server, "frames", domain="/held.h5")
        for i in range(2, 5):
            go.write_text(str(i))
            assert w.stdout.readline().strip() == str(i)
            assert holder.is_alive(), "the holding evaluation ended early"
            # written and flushed before this request: the request sees it
            shape = get(server, f"/datasets/{did}", domain="/held.h5").json()["shape"]["dims"]
            assert shape[0] == i, f"REST saw {shape[0]} frames after the writer flushed {i}"
            r = get(server, f"/datasets/{did}/value", domain="/held.h5", select=f"[{i - 1}:{i},0:1,0:2]")
            assert r.status_code == 200, r.text
            assert r.json()["value"] == [[[i, i]]]
            # a second evaluation opening the file meanwhile sees it too
            e = evaluate(server, "local a = ... return nx.load(a.path).frames.shape[1]", {"path": "/held.h5"})
            assert e.status_code == 200, e.text
            assert e.json()["result"] == i, f"an evaluation saw {e.json()['result']} frames after {i} were flushed"
        set_flag(root, 1)
        holder.join(120)
        assert result["r"].status_code == 200, result["r"].text
        assert result["r"].json()["result"] == [1, 64]
    finally:
        set_flag(root, 1)
        go.write_text("99")
        w.wait(60)


def test_whole_frame_reads_finish_while_the_file_grows(live):
    """A 2048x1536 int32 frame (12.6 MB) streams in two blocks; the file grows between
    them at every poll. Every read finishes with the bytes of its frame."""
    server, root = live["server"], live["root"]
    shape = (2048, 1536)
    w = writer(live, "big.h5", 40, shape, pause=0.05)
    problems, reads = [], [0]
    done = threading.Event()

    def poll_shape():
        s = requests.Session()
        s.auth = (USER, PASSWORD)
        did = None
        while not done.is_set():
            try:
                did = did or dataset_id(server, "frames", domain="/big.h5")
                s.get(f"{server.url}/datasets/{did}", params={"domain": "/big.h5"}, timeout=60)
            except Exception:
                pass
            time.sleep(0.01)

    def read_frames():
        s = requests.Session()
        s.auth = (USER, PASSWORD)
        did = dataset_id(server, "frames", domain="/big.h5")
        while not done.is_set():
            n = s.get(f"{server.url}/datasets/{did}", params={"domain": "/big.h5"}, timeout=60).json()["shape"]["dims"][0]
            if n == 0:
                continue
            i = n - 1
            try:
                r = s.get(f"{server.url}/datasets/{did}/value", params={"domain": "/big.h5", "select": f"[{i}:{i + 1},:,:]"},
                          headers={"Accept": "application/octet-stream"}, timeout=60)
            except Exception as e:  # a body cut off mid-way
                problems.append(f"frame {i}: {e!r}"[:300])
                continue
            if r.status_code != 200:
                problems.append(f"frame {i}: {r.status_code} {r.text[:200]}")
                continue
            got = np.frombuffer(r.content, "<i4")
            if got.size != shape[0] * shape[1] or not (got == i + 1).all():
                problems.append(f"frame {i}: {got.size} values, not all {i + 1}")
            reads[0] += 1

    try:
        assert w.stdout.readline().strip() == "1"
        threads = [threading.Thread(target=poll_shape), threading.Thread(target=read_frames),
                   threading.Thread(target=read_frames)]
        for t in threads:
            t.start()
        w.stdout.read()
        assert w.wait(120) == 0
    finally:
        done.set()
        for t in threads:
            t.join(120)
        w.kill()
    assert not problems, problems[:10]
    assert reads[0] >= 10, reads


# An nx.remote client following a growing file: refresh() asks the server again.
FOLLOWING = """
local url, user, password, go = ...
local r = nx.remote(url, {user = user, password = password})
local d = r:load("/followed.h5").frames
io.write(d.shape[1], "\\n"); io.flush()
for i = 2, 3 do
  local g = io.open(go, "w"); g:write(tostring(i)); g:close()
  while true do
    d:refresh()
    if d.shape[1] >= i then break end
  end
  local frame = d[i - 1]
  io.write(d.shape[1], " ", frame:min(), " ", frame:max(), "\\n"); io.flush()
end
"""


def follow(live, tmp_path, name, frames, shape, script):
    """Runs the Lua `script` (args: url, user, password, go file) against a growing file
    written `frames` frames of `shape` by the writer, which waits on the go file (1 frame
    written first); the finished process."""
    go = tmp_path / "go"
    go.write_text("1")
    w = writer(live, name, frames, shape, go=go)
    try:
        assert w.stdout.readline().strip() == "1"
        path = tmp_path / "client.lua"
        path.write_text(script)
        r = subprocess.run([BIN, str(path), live["server"].url, USER, PASSWORD, str(go)], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r
    finally:
        go.write_text("99")
        w.wait(60)


def test_nx_remote_follows_a_growing_file_with_refresh(live, tmp_path):
    r = follow(live, tmp_path, "followed.h5", 3, (4, 4), FOLLOWING)
    assert r.stdout.split("\n")[:3] == ["1", "2 2 2", "3 3 3"], r.stdout


# A small field of a growing file, read whole after each refresh(): its values come with
# its shape (nxlua serve sends a few KB of values with a dataset's description).
SMALL_FOLLOWING = """
local url, user, password, go = ...
local r = nx.remote(url, {user = user, password = password})
local d = r:load("/small.h5").frames
for i = 2, 3 do
  local g = io.open(go, "w"); g:write(tostring(i)); g:close()
  repeat d:refresh() until d.shape[1] >= i
  local a = d:read()
  io.write(a.shape[1], " ", a[i - 1]:min(), " ", a:sum(), "\\n"); io.flush()
end
"""


def test_a_small_field_is_read_with_its_shape_after_refresh(live, tmp_path):
    """The status of a growing stack is followed in one request per poll: the whole of a
    small field arrives with its description, in the same state of the file as its shape,
    and no value request follows."""
    r = follow(live, tmp_path, "small.h5", 3, (2, 2), SMALL_FOLLOWING)
    # frame i holds i + 1: after 2 frames the sum is (1 + 2) * 4, after 3 (1 + 2 + 3) * 4
    assert r.stdout.split("\n")[:2] == ["2 2 12", "3 3 24"], r.stdout
    did = dataset_id(live["server"], "frames", domain="/small.h5")
    log = live["server"].log_path.read_text()
    assert f"path=/datasets/{did} " in log
    assert f"path=/datasets/{did}/value" not in log


# r:wait: at once without a version, after the timeout when nothing changes, as soon as
# the writer adds a frame; a file that is not there is not found, as on every route.
WAITING = """
local url, user, password, go = ...
local r = nx.remote(url, {user = user, password = password})
local v0, c0 = r:wait("/waited.h5")
local t = nxlua.time()
local v1, c1 = r:wait("/waited.h5", v0, 0.3)
print(c0, c1, v1 == v0, nxlua.time() - t >= 0.25)
local g = io.open(go, "w"); g:write("2"); g:close()
local v, n, changes = v1, 1, 0
repeat
  local changed
  v, changed = r:wait("/waited.h5", v, 30)
  assert(changed, "a wait of 30 s ended with no change")
  changes = changes + 1
  n = r:load("/waited.h5").frames.shape[1]
until n >= 2
print(n, changes >= 1, v ~= v1)
print(select(2, pcall(r.wait, r, "/not_yet.h5")))
for _, bad in ipairs({-1, 0 / 0}) do
  print(select(2, pcall(r.wait, r, "/waited.h5", v, bad)))
end
"""


def test_a_client_waits_for_a_change_instead_of_polling(live, tmp_path):
    server = live["server"]
    lines = follow(live, tmp_path, "waited.h5", 2, (2, 2), WAITING).stdout.splitlines()
    assert lines[0] == "true\tfalse\ttrue\ttrue", lines
    assert lines[1] == "2\ttrue\ttrue", lines
    assert "wait for a change of '/not_yet.h5': 404 not found" in lines[2], lines
    assert all("timeout must be a number of seconds >= 0" in x for x in lines[3:5]), lines
    # hostile or wrong requests get their reason
    for params, status, words in [({"domain": "/waited.h5", "timeout": "soon"}, 400, "timeout must be a number"),
                                  ({"domain": "/waited.h5", "timeout": "-3"}, 400, "timeout must be a number"),
                                  ({"domain": "/"}, 400, "is a folder"),
                                  ({}, 400, "domain parameter is missing"),
                                  ({"domain": "/../etc/passwd"}, 403, "")]:
        resp = requests.get(server.url + "/nxlua/wait", params=params, auth=(USER, PASSWORD), timeout=60)
        assert resp.status_code == status and words in resp.json()["error"], (params, resp.status_code, resp.text)
    assert requests.get(server.url + "/nxlua/wait", params={"domain": "/waited.h5"}, timeout=60).status_code == 401


# r:wait with fields: a change brings their shape and small value, so a follower makes one
# request per commit (then reads the frame it wants). No refresh() anywhere here.
WAITING_WITH_FIELDS = """
local url, user, password, go = ...
local r = nx.remote(url, {user = user, password = password})
local f = r:load("/waitfields.h5")
local d = f.frames
local v = r:wait("/waitfields.h5")
print(d.shape[1])
for i = 2, 3 do
  local g = io.open(go, "w"); g:write(tostring(i)); g:close()
  repeat
    local changed
    v, changed = r:wait("/waitfields.h5", v, 30, {d})
  until d.shape[1] >= i
  local a = d:read()
  io.write(a.shape[1], " ", a[i - 1]:min(), " ", a:sum(), "\\n"); io.flush()
end
local other = nx.remote(url, {user = user, password = password}):load("/waitfields.h5").frames
print(select(2, pcall(r.wait, r, "/waitfields.h5", nil, 1, {other})))
print(select(2, pcall(r.wait, r, "/waitfields.h5", nil, 1, {f})))
print(select(2, pcall(r.wait, r, "/waitfields.h5", nil, 1, d)))
"""


def test_a_wait_brings_the_fields_it_names_refreshed(live, tmp_path):
    """r:wait(domain, version, timeout, {fields}): the answer to a change carries the
    fields' descriptions (shape, small value) from the state its version names, so a
    follower of a growing stack asks once per commit instead of once per field."""
    r = follow(live, tmp_path, "waitfields.h5", 3, (2, 2), WAITING_WITH_FIELDS)
    lines = r.stdout.split("\n")
    # frame i holds i + 1: after 2 frames the sum is (1 + 2) * 4, after 3 (1 + 2 + 3) * 4
    assert lines[:3] == ["1", "2 2 12", "3 3 24"], r.stdout
    assert "is not a field of this file on this server" in lines[3], lines
    assert "item 1 is not a field of a remote file" in lines[4], lines
    assert "table expected" in lines[5], lines
    server = live["server"]
    did = dataset_id(server, "frames", domain="/waitfields.h5")
    log = server.log_path.read_text()
    waits = [x for x in log.splitlines() if "path=/nxlua/wait" in x and "domain=/waitfields.h5" in x]
    assert len(waits) >= 3, waits
    # the client never asked for the field itself: not its description, not its values
    assert f"path=/datasets/{did}" not in log
    # the route itself: a change answered with the datasets named, in one state
    resp = requests.get(server.url + "/nxlua/wait", params={"domain": "/waitfields.h5", "refresh": did},
                        auth=(USER, PASSWORD), timeout=60)
    assert resp.status_code == 200, resp.text
    j = resp.json()
    assert j["changed"] is True and j["datasets"][did]["shape"]["dims"] == [3, 2, 2], j
    assert np.array(j["datasets"][did]["value"]).sum() == 24
    # hostile or wrong lists get their reason
    gid = root_id(server, "/waitfields.h5")
    for refresh, status, words in [("d-not-an-id", 400, "is not an object id"),
                                   (gid, 400, "used as one of"),
                                   (",".join([did] * 65), 400, "at most 64 datasets")]:
        resp = requests.get(server.url + "/nxlua/wait", params={"domain": "/waitfields.h5", "refresh": refresh},
                            auth=(USER, PASSWORD), timeout=60)
        assert resp.status_code == status and words in resp.json()["error"], (refresh, resp.status_code, resp.text)


def test_a_stopping_server_answers_its_waiting_requests(tmp_path):
    """A wait is answered (no change) when the server stops, not held to its timeout:
    the server would otherwise take up to a minute to stop."""
    root, users = served_folder(tmp_path)
    with h5py.File(root / "still.h5", "w") as f:
        f["x"] = [1, 2, 3]
    s = Server(root, users, log=tmp_path / "serve.log")
    answers = []
    try:
        version = requests.get(s.url + "/nxlua/wait", params={"domain": "/still.h5"}, auth=(USER, PASSWORD),
                               timeout=60).json()["version"]

        def wait():
            answers.append(requests.get(s.url + "/nxlua/wait", auth=(USER, PASSWORD), timeout=120,
                                        params={"domain": "/still.h5", "since": version, "timeout": "60"}))
        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.5)
    finally:
        code = s.stop()
    t.join(120)
    assert code == 0
    assert answers and answers[0].status_code == 200 and answers[0].json()["changed"] is False, answers


def workers(pid):
    """{child pid: argv} of the server's evaluation worker processes."""
    found = {}
    for c in child_pids(pid):
        try:
            argv = pathlib.Path(f"/proc/{c}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"eval-worker" in argv:
            found[c] = [a.decode() for a in argv if a]
    return found


def cpu_ticks(pid):
    """User + system CPU time of a process in clock ticks (0 once it is gone)."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def open_files(pid):
    """The paths a process has open (gone: none)."""
    out = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                pass
    except OSError:
        pass
    return out


def process_state(pid):
    """R, S, Z, ... of a process; None once it is gone."""
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def busy_evaluation(server, seconds):
    """Starts an evaluation that spins about `seconds` in Lua; returns (thread, result dict)."""
    result = {}
    code = "local n = 0 for i = 1, %d do n = n + 1 end return 1" % int(seconds * 2e7)

    def run():
        try:
            result["r"] = evaluate(server, code, {})
        except requests.RequestException as e:   # the server was killed meanwhile
            result["error"] = e
    t = threading.Thread(target=run)
    t.start()
    return t, result


def wait_for(check, what, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        v = check()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s: {what}")


def test_evaluations_run_in_worker_processes_below_the_live_work(live):
    """Evaluations shared HDF5's global lock and open files with the server's gate: in the
    live run a GET of the tree waited 8.6 s behind an evaluation. They run in worker
    processes of the server (its own binary, `serve eval-worker`) 5 nice steps below the
    server (itself at nice 10 by default, below a stacker), every thread of them."""
    server = live["server"]
    t, result = busy_evaluation(server, 3)
    try:
        found = wait_for(lambda: workers(server.proc.pid), "a worker process of the server")
        pid, argv = next(iter(found.items()))
        assert argv[1:3] == ["serve", "eval-worker"], argv
        assert argv[-1] == str(server.proc.pid), argv   # it knows its parent
        served_at = max(os.getpriority(os.PRIO_PROCESS, 0), 10)
        # every thread, Dispatch's too (as root it set its own from their QoS, -4..0,
        # until the server gave up CAP_SYS_NICE)
        assert {v for vs in thread_nices(server.proc.pid).values() for v in vs} == {served_at}, thread_nices(server.proc.pid)
        # a worker lowers itself first thing (found before that, it still has the server's)
        lowered = {min(19, served_at + 5)}
        wait_for(lambda: {v for vs in thread_nices(pid).values() for v in vs} == lowered,
                 f"every thread of the worker at nice {lowered} (now {thread_nices(pid)})")
        # no descriptor of the server reaches the worker: only stdin, stdout, stderr and
        # what it opened itself (an inherited HDF5 file would keep the file's lock held)
        inherited = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        assert not [p for p in inherited if "socket:" in p or p.endswith((".h5", ".nxs"))], inherited
    finally:
        t.join(60)
    assert result["r"].status_code == 200 and result["r"].json()["result"] == 1
    # the same worker answers the next request
    r = evaluate(server, "return 2", {})
    assert r.status_code == 200 and r.json()["result"] == 2
    assert pid in workers(server.proc.pid)


def test_a_worker_killed_in_an_evaluation_is_a_clear_error_and_replaced(live):
    server = live["server"]
    before = {p: cpu_ticks(p) for p in workers(server.proc.pid)}   # idle ones from earlier tests
    t, result = busy_evaluation(server, 20)
    try:
        busy = wait_for(lambda: [p for p in workers(server.proc.pid) if cpu_ticks(p) > before.get(p, 0) + 10],
                        "a worker busy evaluating")
        os.kill(busy[0], signal.SIGKILL)
    finally:
        t.join(60)
    r = result["r"]
    assert r.status_code == 500, r.text
    assert "killed by signal 9" in r.text and "next evaluation starts a new one" in r.text, r.text
    assert busy[0] not in workers(server.proc.pid)          # reaped, not a zombie child
    r = evaluate(server, "local a = ... return a.x * 2", {"x": 21})
    assert r.status_code == 200 and r.json()["result"] == 42, r.text
    # an idle worker killed from outside is replaced too
    killed = workers(server.proc.pid)
    for p in killed:
        os.kill(p, signal.SIGKILL)
    wait_for(lambda: all(process_state(p) in ("Z", None) for p in killed), "the killed workers to end")
    r = evaluate(server, "return 'again'", {})
    assert r.status_code == 200 and r.json()["result"] == "again", r.text


def test_workers_end_with_a_killed_server(tmp_path):
    """A server killed with SIGKILL (no chance to stop anything) takes its evaluation
    workers with it, busy or idle."""
    root, users = served_folder(tmp_path)
    s = Server(root, users, "--allow-eval", log=tmp_path / "serve.log")
    try:
        t, _ = busy_evaluation(s, 30)                                  # a busy worker
        wait_for(lambda: workers(s.proc.pid), "a worker")
        assert evaluate(s, "return 1", {}).json()["result"] == 1      # and an idle one
        pids = wait_for(lambda: len(workers(s.proc.pid)) >= 2 and workers(s.proc.pid), "two workers")
        s.proc.kill()
        s.proc.wait(30)
        wait_for(lambda: all(process_state(p) in ("Z", None) for p in pids),
                 f"the workers {list(pids)} to end with their server")
        t.join(60)
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
        s.proc.stdout.close()
        s.stop()   # the log: nothing from AddressSanitizer, no HDF5 error stacks
