"""nx.remote against a real HSDS (The HDF Group's HDF REST server, 1.0.2 from PyPI, run
locally without Docker as DESIGN.md section 7 shows): files put into it with h5pyd's
hsload, read with the nxlua client and compared with the local reads of the same files.

HSDS lives in the venv scripts/test makes with scripts/requirements-bench.txt
(venv-bench). If it is missing or HSDS does not start, the tests fail with the reason
and HSDS's log: nothing is skipped silently. HSDS's data nodes listen on fixed ports
(6101-6104), so two HSDS cannot run at once: everything is checked in one test (pytest
-n 2 would start a module fixture in each worker), and the serve benchmark's HSDS must
not run at the same time."""
import os
import pathlib
import signal
import socket
import subprocess
import textwrap
import time

import pytest
import requests

from conftest import BIN
from test_remote_client import make_nxlua_file, run_lua, ok
from test_serve import FRAMES, cache_dir, make_sample

USER, PASSWORD = "hsuser", "hs-pass-word"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hsds(tmp_path_factory):
    venv = cache_dir() / "venv-bench" / "bin"
    if not (venv / "hsds").exists():
        pytest.fail(f"HSDS is not installed in {venv.parent} (scripts/venv --name venv-bench scripts/requirements-bench.txt)")
    base = tmp_path_factory.mktemp("hsds")
    (base / "store" / "hsdstest").mkdir(parents=True)
    files = base / "files"
    files.mkdir()
    make_sample(files / "sample.nxs")
    make_nxlua_file(files / "nxlua.nxs", base)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, HS_ENDPOINT=url, HS_USERNAME=USER, HS_PASSWORD=PASSWORD, BUCKET_NAME="hsdstest")
    log_path = base / "hsds.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([str(venv / "hsds"), "--root_dir", str(base / "store"), "--hs_username", USER,
                             "--hs_password", PASSWORD, "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=base, start_new_session=True)

    def stop():
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    started = time.time()
    while True:
        try:
            if requests.get(url + "/about", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.time() - started > 120:
            stop()
            pytest.fail(f"HSDS did not start (exit {proc.returncode}):\n{log_path.read_text()[-4000:]}")
        time.sleep(0.3)
    try:
        # the folders hsload writes into (HSDS answers /about before its data nodes are
        # ready: a first hstouch may fail, so the user's folder is tried until it exists)
        subprocess.run([str(venv / "hstouch"), "/home/"], env=env, cwd=base, capture_output=True, timeout=120)
        deadline = time.time() + 120
        for attempt in range(60):
            r = subprocess.run([str(venv / "hstouch"), f"/home/{USER}/"], env=env, cwd=base, capture_output=True,
                               text=True, timeout=120)
            if time.time() > deadline:
                pytest.fail(f"hstouch /home/{USER}/ did not succeed within 120 s: {r.stdout}{r.stderr}\n"
                            f"{log_path.read_text()[-4000:]}")
            if requests.get(url + "/domains", params={"domain": f"/home/{USER}/"}, auth=(USER, PASSWORD),
                            timeout=30).status_code == 200:
                break
            if attempt == 0:
                subprocess.run([str(venv / "hstouch"), "/home/"], env=env, cwd=base, capture_output=True, timeout=120)
            time.sleep(0.5)
        else:
            pytest.fail(f"hstouch /home/{USER}/: {r.stdout}{r.stderr}\n{log_path.read_text()[-4000:]}")
        for name in ("sample.nxs", "nxlua.nxs"):
            r = subprocess.run([str(venv / "hsload"), str(files / name), f"/home/{USER}/"], env=env, cwd=base,
                               capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, f"hsload {name}: {r.stderr}\n{log_path.read_text()[-4000:]}"
        yield {"url": url, "files": files, "log": log_path}
    finally:
        stop()


def connect(hsds):
    return f'local r = nx.remote("{hsds["url"]}", {{user = "{USER}", password = "{PASSWORD}"}})\n'


def test_hsds(hsds, tmp_path):
    """One HSDS for all checks (see the module's note)."""
    for name in ("sample.nxs", "nxlua.nxs"):
        check_tree_equals_local(hsds, tmp_path, name)
    check_attributes_and_slices(hsds, tmp_path)
    check_wrong_password(hsds, tmp_path)


def check_tree_equals_local(hsds, tmp_path, name):
    out = ok(run_lua(connect(hsds) + f"""
        local g = r:load("/home/{USER}/{name}")
        local l = nx.load("{hsds['files'] / name}")
        io.write(tostring(g), "\\n=====\\n", tostring(l), "\\n")
    """, tmp_path))
    remote, local = out.split("=====\n")
    assert remote.strip() == local.strip()


def check_attributes_and_slices(hsds, tmp_path):
    out = ok(run_lua(connect(hsds) + f"""
        local g = r:load("/home/{USER}/sample.nxs")
        local l = nx.load("{hsds['files'] / 'sample.nxs'}")
        local e = g.entry
        print(e.attrs.count_time, e.attrs.fixed, e.attrs.shape_attr:sum(), e.data.frames.units)
        print(e.vnames:read()[3], e.peaks:read()[2].I, e.mixed[0].name, e.title.nxvalue, e.scalar_int.nxvalue)
        print(e.flags.dtype, e.big_endian:read():sum(), table.concat(e.data.frames.chunks, "x"), e.data.frames.compression)
        local c, lc = e.data.frames, l.entry.data.frames
        for _, s in ipairs({{"5", "0:10:2, 10:14, 7", "1:9:3, ::5, 60:", "::-3, 4, ::-7"}}) do
          io.write(c[s]:eq(lc[s]):all() and "same " or ("differs " .. s .. " "))
        end
        print()
        print(c:sum(0):eq(lc:sum(0)):all(), c:mean() == lc:mean(), e.image:read():eq(l.entry.image:read()):all())
        print(g["entry/link_to_frames"][2]:sum() == lc[2]:sum(), g:default().nxpath)
        local names = {{}}
        for _, x in ipairs(r:ls("/home/{USER}/")) do names[#names + 1] = x.name .. "=" .. x.class end
        print(table.concat(names, ","))
        print(pcall(r.load, r, "/home/{USER}/nope.nxs"))
    """, tmp_path))
    lines = out.splitlines()
    assert lines[0] == "1.5\tfixedlen\t21\tcounts"
    assert lines[1] == "Ångström\t2.25\tseven\ta title\t-42"
    assert lines[2] == "bool\t-0.5\t1x64x64\tgzip"
    assert lines[3].split() == ["same"] * 4
    assert lines[4] == "true\ttrue\ttrue"
    assert lines[5] == "true\t/entry/data"
    assert lines[6] == f"/home/{USER}/nxlua.nxs=domain,/home/{USER}/sample.nxs=domain"
    assert lines[7].startswith("false\t") and "404 not found" in lines[7]
    assert int(FRAMES[5].sum()) > 0


def check_wrong_password(hsds, tmp_path):
    out = ok(run_lua(f"""
        local r = nx.remote("{hsds['url']}", {{user = "{USER}", password = "wrong"}})
        print(pcall(r.load, r, "/home/{USER}/sample.nxs"))
    """, tmp_path))
    assert out.startswith("false\t") and ("401 unauthorized" in out or "403 forbidden" in out)
