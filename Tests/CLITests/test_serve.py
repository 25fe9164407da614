"""End-to-end tests of `nxlua serve` (docs/remote.md): real servers on loopback, started
and stopped by fixtures; files written with h5py; read with the real HDF REST clients,
h5pyd 1.0 (in this venv) and h5pyd 0.24 (its own venv, scripts/venv --name
venv-h5pyd024), and with plain HTTP for the hostile requests.

Every server prints "nxlua serve: listening on port N" once bound (--port 0 picks a free
port); its log goes to a file, checked for sanitizer reports when it stops."""
import base64
import concurrent.futures
import json
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

h5pyd = pytest.importorskip("h5pyd")

from conftest import BIN, LIVE_SLICE, ROOT, child_pids, default_slice, thread_nices, thread_slices

USER, PASSWORD = "ray", "s3cret-beamline"
FRAMES = np.arange(10 * 64 * 64, dtype="i4").reshape(10, 64, 64)


EVAL_TIMEOUT = "5" if os.environ.get("NXLUA_SANITIZED") == "1" else "2"

def cache_dir():
    return pathlib.Path(os.environ.get("NXLUA_CACHE") or pathlib.Path(
        os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "nxlua")


def make_sample(path):
    """The file most tests read: the layouts the HSDS traces exercised."""
    with h5py.File(path, "w") as f:
        f.attrs["NX_class"] = "NXroot"
        f.attrs["default"] = "entry"
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        e.attrs["count_time"] = 1.5
        e.attrs.create("fixed", np.bytes_("fixedlen"))
        e.attrs["shape_attr"] = np.array([[1, 2, 3], [4, 5, 6]], dtype="u2")
        d = e.create_group("data")
        d.attrs["NX_class"] = "NXdata"
        d.attrs["signal"] = "frames"
        fr = d.create_dataset("frames", data=FRAMES, chunks=(1, 64, 64), compression="gzip")
        fr.attrs["units"] = "counts"
        d["x"] = np.linspace(0, 1, 64)
        e["title"] = "a title"
        e["peaks"] = np.array([(1, 0, 3.5), (0, 1, 2.25)], dtype=[("h", "i4"), ("k", "i4"), ("I", "f8")])
        e["mixed"] = np.array([(7, "seven")], dtype=[("n", "i8"), ("name", h5py.string_dtype())])
        e["link_to_frames"] = h5py.SoftLink("/entry/data/frames")
        e["hard_frames"] = fr
        e["names"] = np.array([b"ab", b"cde"], dtype="S4")
        e["vnames"] = np.array(["x", "yy", "Ångström"], dtype=h5py.string_dtype())
        e["flags"] = np.array([True, False, True])
        e["big_endian"] = np.array([1.5, -2.0], dtype=">f8")
        e["scalar_int"] = np.int64(-42)
        e["empty"] = np.zeros((0, 3), dtype="f4")
        e.create_dataset("image", data=np.arange(512 * 512, dtype="i4").reshape(512, 512), chunks=(64, 512))  # 1 MiB


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A served folder with sample files, a subfolder, escapes that must stay closed, and
    a users file made by `nxlua serve adduser`."""
    base = tmp_path_factory.mktemp("serve")
    root = base / "data"
    (root / "sub").mkdir(parents=True)
    outside = base / "outside"
    outside.mkdir()
    make_sample(root / "sample.nxs")
    make_sample(root / "sub" / "nested.nxs")
    make_sample(outside / "secret.nxs")
    (root / "notes.txt").write_text("not HDF5\n")
    os.symlink(outside / "secret.nxs", root / "escape.nxs")
    os.symlink(outside, root / "escapedir")
    users = base / "users"
    r = subprocess.run([BIN, "serve", "adduser", str(users), USER], input=PASSWORD + "\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return {"root": root, "users": users, "base": base}


class Server:
    def __init__(self, folder, users, *extra, log=None, new_session=False):
        self.log_path = log
        self.log = open(log, "w")
        args = [BIN, "serve", str(folder), "--port", "0", "--host", "127.0.0.1"]
        if users:
            args += ["--users", str(users)]
        self.proc = subprocess.Popen(args + list(extra), stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     start_new_session=new_session)
        line = [None]

        def read():
            line[0] = self.proc.stdout.readline()
        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(60)
        if not line[0] or "listening on port" not in line[0]:
            self.stop()
            raise AssertionError(f"server did not start: {line[0]!r}\n{pathlib.Path(log).read_text()}")
        self.port = int(line[0].split()[-1])
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        """SIGTERM; the server drains and exits 0. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        text = pathlib.Path(self.log_path).read_text()
        assert "AddressSanitizer" not in text and "runtime error" not in text, text[-4000:]
        assert "HDF5-DIAG" not in text, text[-4000:]  # every HDF5 thread is silenced
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(served, tmp_path_factory):
    s = Server(served["root"], served["users"], "--max-request-size", "1000000",
               log=tmp_path_factory.mktemp("log") / "serve.log")
    yield s
    assert s.stop() == 0


def auth():
    return (USER, PASSWORD)


def h5file(server, domain="/sample.nxs"):
    return h5pyd.File(domain, "r", endpoint=server.url, username=USER, password=PASSWORD)


def get(server, path, **params):
    return requests.get(server.url + path, params=params, auth=auth(), timeout=60)


def root_id(server, domain="/sample.nxs"):
    r = get(server, "/", domain=domain)
    assert r.status_code == 200, r.text
    return r.json()["root"]


def dataset_id(server, path, domain="/sample.nxs"):
    """Walks links from the root with the 0.x routes."""
    gid = root_id(server, domain)
    parts = path.strip("/").split("/")
    for i, name in enumerate(parts):
        r = get(server, f"/groups/{gid}/links/{name}", domain=domain)
        assert r.status_code == 200, r.text
        gid = r.json()["link"]["id"]
    return gid


# ---------------------------------------------------------------- h5pyd 1.0

def test_h5pyd10_tree_attributes_and_types(server):
    with h5file(server) as f:
        assert list(f) == ["entry"]
        assert sorted(f["entry"]) == sorted(["data", "empty", "flags", "hard_frames", "image", "link_to_frames",
                                             "mixed", "names", "peaks", "scalar_int", "title", "vnames", "big_endian"])
        assert f.attrs["NX_class"] == "NXroot"
        assert f["entry"].attrs["count_time"] == 1.5
        assert f["entry"].attrs["fixed"] == b"fixedlen"
        assert f["entry"].attrs["shape_attr"].tolist() == [[1, 2, 3], [4, 5, 6]]
        ds = f["entry/data/frames"]
        assert ds.shape == (10, 64, 64) and ds.dtype == np.int32 and ds.chunks == (1, 64, 64)
        assert ds.compression == "gzip" and ds.compression_opts == 4
        assert ds.attrs["units"] == "counts"
        assert f["entry/empty"].shape == (0, 3)


def test_h5pyd10_values(server):
    with h5file(server) as f:
        ds = f["entry/data/frames"]
        assert (ds[5] == FRAMES[5]).all()
        assert (ds[0:10:2, 10:14, 7] == FRAMES[0:10:2, 10:14, 7]).all()
        assert (ds[1:9:3, ::5, 60:] == FRAMES[1:9:3, ::5, 60:]).all()
        assert (ds[...] == FRAMES).all()
        assert (f["entry/data/x"][...] == np.linspace(0, 1, 64)).all()
        peaks = f["entry/peaks"][...]
        assert peaks.dtype.names == ("h", "k", "I") and peaks.tolist() == [(1, 0, 3.5), (0, 1, 2.25)]
        mixed = f["entry/mixed"][...]
        assert mixed[0]["n"] == 7 and mixed[0]["name"] in (b"seven", "seven")
        assert f["entry/title"][()] == b"a title"
        assert f["entry/names"][...].tolist() == [b"ab", b"cde"]
        assert [v.decode() if isinstance(v, bytes) else v for v in f["entry/vnames"][...]] == ["x", "yy", "Ångström"]
        assert f["entry/flags"][...].tolist() == [True, False, True]
        assert f["entry/big_endian"][...].tolist() == [1.5, -2.0]
        assert f["entry/scalar_int"][()] == -42
        assert (f["entry/image"][100:200, 7] == np.arange(512 * 512).reshape(512, 512)[100:200, 7]).all()


def test_h5pyd10_links(server):
    with h5file(server) as f:
        # a hard link is the same object (one id), a soft link is reported as one
        assert f["entry/hard_frames"].id.id == f["entry/data/frames"].id.id
        link = f["entry"].get("link_to_frames", getlink=True)
        assert isinstance(link, h5pyd.SoftLink) and link.path == "/entry/data/frames"
        assert f["entry"]["link_to_frames"].shape == (10, 64, 64)


def test_h5pyd10_opens_in_one_round_trip(server):
    """getobjs=1 carries every object with id and lastModified (h5pyd 0.x needs both)."""
    r = get(server, "/", domain="/sample.nxs", getobjs="1")
    body = r.json()
    assert body["class"] == "domain" and body["limits"]["max_request_size"] == 1000000
    objs = body["domain_objs"]
    assert body["root"] in objs
    for oid, obj in objs.items():
        assert obj["id"] == oid and "lastModified" in obj and "created" in obj
        assert oid[:2] in ("g-", "d-") and len(oid) == 38


def test_folders(server):
    r = get(server, "/domains", domain="/")
    names = sorted(d["name"] for d in r.json()["domains"])
    assert names == ["/sample.nxs", "/sub"]  # notes.txt is not HDF5; the escapes lead outside
    r = get(server, "/domains", domain="/sub/")
    assert [d["name"] for d in r.json()["domains"]] == ["/sub/nested.nxs"]
    with h5pyd.Folder("/sub/", endpoint=server.url, username=USER, password=PASSWORD) as folder:
        assert list(folder) == ["nested.nxs"]
    with h5file(server, "/sub/nested.nxs") as f:
        assert (f["entry/data/frames"][3] == FRAMES[3]).all()


def test_ids_are_stable_across_restarts(served, server, tmp_path):
    first = dataset_id(server, "entry/data/frames")
    other = Server(served["root"], served["users"], log=tmp_path / "second.log")
    try:
        assert dataset_id(other, "entry/data/frames") == first
        # an id this process never handed out is still found
        fresh = Server(served["root"], served["users"], log=tmp_path / "third.log")
        try:
            r = get(fresh, f"/datasets/{first}", domain="/sample.nxs")
            assert r.status_code == 200 and r.json()["shape"]["dims"] == [10, 64, 64]
        finally:
            assert fresh.stop() == 0
    finally:
        assert other.stop() == 0


def test_binary_and_json_values(server):
    did = dataset_id(server, "entry/data/frames")
    r = requests.get(f"{server.url}/datasets/{did}/value", params={"domain": "/sample.nxs", "select": "[2:3,0:2,0:3]"},
                     headers={"Accept": "application/octet-stream"}, auth=auth(), timeout=60)
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert np.frombuffer(r.content, "<i4").tolist() == FRAMES[2:3, 0:2, 0:3].ravel().tolist()
    r = get(server, f"/datasets/{did}/value", domain="/sample.nxs", select="[2:3,0:2,0:3]")
    assert r.json()["value"] == FRAMES[2:3, 0:2, 0:3].tolist()
    # index lists and a POST of binary points (h5pyd's point selections)
    r = get(server, f"/datasets/{did}/value", domain="/sample.nxs", select="[[1,3,4],5,0:2]")
    assert r.json()["value"] == FRAMES[[1, 3, 4], 5:6, 0:2].tolist()
    pts = np.array([[9, 63, 63], [0, 0, 1], [4, 2, 2]], dtype="<u8")
    r = requests.post(f"{server.url}/datasets/{did}/value", params={"domain": "/sample.nxs"}, data=pts.tobytes(),
                      headers={"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"},
                      auth=auth(), timeout=60)
    assert np.frombuffer(r.content, "<i4").tolist() == [FRAMES[9, 63, 63], FRAMES[0, 0, 1], FRAMES[4, 2, 2]]
    # a long select travels in a JSON POST body
    r = requests.post(f"{server.url}/datasets/{did}/value", params={"domain": "/sample.nxs"},
                      data=json.dumps({"select": "[0:2,1:2,0:4]"}), auth=auth(), timeout=60)
    assert r.json()["value"] == FRAMES[0:2, 1:2, 0:4].tolist()


def test_gzip_when_asked(server):
    r = requests.get(server.url + "/", params={"domain": "/sample.nxs", "getobjs": "1"},
                     headers={"Accept-Encoding": "gzip"}, auth=auth(), timeout=60)
    assert r.headers.get("Content-Encoding") == "gzip" and r.json()["root"]
    r = requests.get(server.url + "/", params={"domain": "/sample.nxs", "getobjs": "1"},
                     headers={"Accept-Encoding": "identity"}, auth=auth(), timeout=60)
    assert "Content-Encoding" not in r.headers


# ---------------------------------------------------------------- h5pyd 0.24

H5PYD024_SCRIPT = textwrap.dedent("""
    import json, sys, numpy as np, h5pyd
    url, user, password = sys.argv[1:4]
    f = h5pyd.File("/sample.nxs", "r", endpoint=url, username=user, password=password)
    ds = f["entry/data/frames"]
    out = {
        "version": h5pyd.version.version,
        "names": sorted(f["entry"]),
        "nx_class": f.attrs["NX_class"],
        "count_time": float(f["entry"].attrs["count_time"]),
        "fixed": f["entry"].attrs["fixed"].decode(),
        "shape": list(ds.shape), "dtype": str(ds.dtype), "chunks": list(ds.chunks), "units": ds.attrs["units"],
        "frame5": ds[5].tolist(),
        "strided": ds[0:10:2, 10:14, 7].tolist(),
        "peaks": [list(p) for p in f["entry/peaks"][...].tolist()],
        "title": f["entry/title"][()].decode(),
        "names_fixed": [v.decode() for v in f["entry/names"][...]],
        "vnames": [v.decode() if isinstance(v, bytes) else v for v in f["entry/vnames"][...]],
        "flags": f["entry/flags"][...].tolist(),
        "soft": list(f["entry/link_to_frames"].shape),
        "image": f["entry/image"][...].sum().item(),
    }
    print(json.dumps(out))
""")


def venv024_python():
    python = cache_dir() / "venv-h5pyd024" / "bin" / "python"
    if not python.exists():
        subprocess.run([str(ROOT / "scripts" / "venv"), "--name", "venv-h5pyd024",
                        str(ROOT / "scripts" / "requirements-h5pyd024.txt")], check=True, capture_output=True, timeout=900)
    return python


def test_h5pyd024_reads(server, tmp_path):
    script = tmp_path / "read024.py"
    script.write_text(H5PYD024_SCRIPT)
    r = subprocess.run([str(venv024_python()), str(script), server.url, USER, PASSWORD],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["version"].startswith("0.24")
    assert "link_to_frames" in out["names"] and out["nx_class"] == "NXroot" and out["count_time"] == 1.5
    assert out["fixed"] == "fixedlen" and out["units"] == "counts"
    assert out["shape"] == [10, 64, 64] and out["dtype"] == "int32" and out["chunks"] == [1, 64, 64]
    assert out["frame5"] == FRAMES[5].tolist()
    assert out["strided"] == FRAMES[0:10:2, 10:14, 7].tolist()
    assert out["peaks"] == [[1, 0, 3.5], [0, 1, 2.25]]
    assert out["title"] == "a title" and out["names_fixed"] == ["ab", "cde"] and out["vnames"] == ["x", "yy", "Ångström"]
    assert out["flags"] == [True, False, True] and out["soft"] == [10, 64, 64]
    # the 1 MiB image is above the limit for one request: 0.24 pages after the 413
    assert out["image"] == int(np.arange(512 * 512, dtype="i8").sum())


# ---------------------------------------------------------------- security

def test_no_credentials_401(server):
    r = requests.get(server.url + "/", params={"domain": "/sample.nxs"}, timeout=60)
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    assert "authentication required" in r.json()["error"]


def test_wrong_password_401(server):
    for who in [(USER, "wrong"), ("nobody", PASSWORD)]:
        r = requests.get(server.url + "/", params={"domain": "/sample.nxs"}, auth=who, timeout=60)
        assert r.status_code == 401, r.text
    with pytest.raises(OSError):
        h5pyd.File("/sample.nxs", "r", endpoint=server.url, username=USER, password="wrong")


@pytest.mark.parametrize("domain,status", [
    ("/../outside/secret.nxs", 403),
    ("/sub/../../outside/secret.nxs", 403),
    ("..", 403),
    ("/escape.nxs", 403),            # a symlink to a file outside
    ("/escapedir/secret.nxs", 403),  # through a symlinked folder
    ("//etc/passwd", 404),           # absolute paths stay inside the folder
    (str(pathlib.Path("/etc/hostname")), 404),
    ("/missing.nxs", 404),
    ("/notes.txt", 400),             # not HDF5: a clear error, no crash
])
def test_traversal_refused(server, domain, status):
    r = get(server, "/", domain=domain)
    assert r.status_code == status, r.text
    assert "domain" in r.json()["error"]


def test_percent_encoded_traversal(server):
    url = server.url + "/?domain=%2e%2e%2foutside%2fsecret.nxs"
    r = requests.get(url, auth=auth(), timeout=60)
    assert r.status_code == 403, r.text
    r = requests.get(server.url + "/?domain=%2E%2E/%2e%2e/etc/passwd", auth=auth(), timeout=60)
    assert r.status_code == 403


def test_oversized_read_413(server):
    did = dataset_id(server, "entry/image")
    r = requests.get(f"{server.url}/datasets/{did}/value", params={"domain": "/sample.nxs"},
                     headers={"Accept": "application/octet-stream"}, auth=auth(), timeout=60)
    assert r.status_code == 413 and "max_request_size" in r.json()["error"]
    r = requests.get(f"{server.url}/datasets/{did}/value", params={"domain": "/sample.nxs", "select": "[0:100,:]"},
                     headers={"Accept": "application/octet-stream"}, auth=auth(), timeout=60)
    assert r.status_code == 200 and len(r.content) == 100 * 512 * 4


def test_large_binary_reads_arrive_whole(served, tmp_path):
    """Binary answers above 256 KiB are written a piece at a time (no 10 MB buffer of
    fresh memory per request): every byte arrives, in order, with the right length; a
    read of one chunk and one across many chunks alike."""
    path = served["root"] / "large.nxs"
    rng = np.random.default_rng(5)
    data = rng.integers(-2**31, 2**31 - 1, size=777_777, dtype="<i4")
    with h5py.File(path, "w") as f:
        f.create_dataset("one_chunk", data=data, chunks=(777_777,))
        f.create_dataset("many_chunks", data=data, chunks=(65_536,))
    s = Server(served["root"], served["users"], log=tmp_path / "large.log")
    try:
        for name in ("one_chunk", "many_chunks"):
            did = dataset_id(s, name, domain="/large.nxs")
            for select, expected in ((None, data), ("[3:700003]", data[3:700003])):
                params = {"domain": "/large.nxs"} | ({"select": select} if select else {})
                r = requests.get(f"{s.url}/datasets/{did}/value", params=params,
                                 headers={"Accept": "application/octet-stream"}, auth=auth(), timeout=60)
                assert r.status_code == 200, r.text
                assert int(r.headers["Content-Length"]) == expected.nbytes
                assert np.array_equal(np.frombuffer(r.content, "<i4"), expected), (name, select)
    finally:
        assert s.stop() == 0
        path.unlink()


def test_json_values_are_bounded(served, tmp_path):
    """A JSON value read costs far more memory than its bytes: above 4M elements it is 413."""
    path = served["root"] / "many.nxs"
    with h5py.File(path, "w") as f:
        f.create_dataset("bytes", data=np.zeros(5_000_000, dtype="u1"), chunks=(1_000_000,))
    s = Server(served["root"], served["users"], log=tmp_path / "json.log")
    try:
        did = dataset_id(s, "bytes", domain="/many.nxs")
        r = get(s, f"/datasets/{did}/value", domain="/many.nxs")
        assert r.status_code == 413 and "application/octet-stream" in r.json()["error"]
        r = requests.get(f"{s.url}/datasets/{did}/value", params={"domain": "/many.nxs"},
                         headers={"Accept": "application/octet-stream"}, auth=auth(), timeout=60)
        assert r.status_code == 200 and len(r.content) == 5_000_000
        r = requests.head(f"{s.url}/datasets/{did}", params={"domain": "/many.nxs"}, auth=auth(), timeout=60)
        assert r.status_code == 200 and r.content == b""
    finally:
        assert s.stop() == 0
        path.unlink()


@pytest.mark.parametrize("select", ["0:1", "[0:1,0:2]", "[0:11,:,:]", "[5,:,-1]", "[a:b,:,:]", "[0:2:0,:,:]",
                                    "[[3,1],:,:]", "[1:2:3:4,:,:]", "[,,]", "[0:2,:,:"])
def test_malformed_select_400(server, select):
    did = dataset_id(server, "entry/data/frames")
    r = get(server, f"/datasets/{did}/value", domain="/sample.nxs", select=select)
    assert r.status_code == 400, r.text
    assert "select" in r.json()["error"]


def test_bad_ids(server):
    r = get(server, "/datasets/not-an-id", domain="/sample.nxs")
    assert r.status_code == 400
    gid = root_id(server)
    r = get(server, f"/datasets/{gid}", domain="/sample.nxs")  # a group id as a dataset
    assert r.status_code == 400
    r = get(server, "/groups/g-00000000-00000000-0000-000000-000000", domain="/sample.nxs")
    assert r.status_code == 404


@pytest.mark.parametrize("method,path", [("PUT", "/"), ("DELETE", "/"), ("POST", "/groups"), ("PUT", "/groups/x/links/y"),
                                         ("PATCH", "/"), ("DELETE", "/datasets/x")])
def test_write_verbs_refused(server, method, path):
    r = requests.request(method, server.url + path, params={"domain": "/sample.nxs"}, auth=auth(), json={}, timeout=60)
    assert r.status_code in (403, 405), r.text
    with pytest.raises(Exception):
        h5pyd.File("/sample.nxs", "a", endpoint=server.url, username=USER, password=PASSWORD)["entry"].attrs["x"] = 1


def test_eval_disabled(server):
    r = requests.post(server.url + "/nxlua/eval", json={"code": "return 1"}, auth=auth(), timeout=60)
    assert r.status_code == 403 and "--allow-eval" in r.json()["error"]


def test_anonymous_only_when_allowed(served, tmp_path):
    s = Server(served["root"], None, "--allow-anonymous", log=tmp_path / "anon.log")
    try:
        with h5pyd.File("/sample.nxs", "r", endpoint=s.url) as f:
            assert (f["entry/data/frames"][1] == FRAMES[1]).all()
    finally:
        assert s.stop() == 0
    r = subprocess.run([BIN, "serve", str(served["root"]), "--port", "0"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "--users" in r.stderr


# ---------------------------------------------------------------- live files

WRITER = textwrap.dedent("""
    import sys, time, h5py, numpy as np
    path, go, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    f = h5py.File(path, "w", libver="latest")
    d = f.create_dataset("frames", shape=(0, 8, 8), maxshape=(None, 8, 8), dtype="i4", chunks=(1, 8, 8))
    f.swmr_mode = True
    for i in range(n):
        d.resize((i + 1, 8, 8))
        d[i] = i
        d.flush()
        print(i + 1, flush=True)
        # wait for the reader to look before growing again
        while open(go).read().strip() != str(i + 1):
            time.sleep(0.01)
    f.close()
""")


def test_swmr_growing_file(served, server, tmp_path):
    live = served["root"] / "live.nxs"
    go = tmp_path / "go"
    go.write_text("")
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    w = subprocess.Popen([sys.executable, str(script), str(live), str(go), "4"], stdout=subprocess.PIPE, text=True)
    try:
        seen = []
        for i in range(1, 5):
            assert w.stdout.readline().strip() == str(i)
            did = dataset_id(server, "frames", domain="/live.nxs")
            shape = get(server, f"/datasets/{did}", domain="/live.nxs").json()["shape"]["dims"]
            r = get(server, f"/datasets/{did}/value", domain="/live.nxs", select=f"[{i - 1}:{i},0:1,0:2]")
            assert r.status_code == 200, (shape, r.text)
            value = r.json()["value"]
            seen.append((shape[0], value))
            go.write_text(str(i))
        assert seen == [(i, [[[i - 1, i - 1]]]) for i in range(1, 5)]
    finally:
        w.wait(60)
        live.unlink()


def test_live_stack_read_by_many_clients_and_evals(served, eval_server, tmp_path):
    """`nxlua stack --watch` grows a stack in the served folder while REST clients read
    frames and remote evaluations reduce them, all at once. HDF5 shares a file opened
    twice in one process (the store and an evaluation) with one metadata cache: every
    frame marked stored must read back as its source, whoever reads it and whenever."""
    import test_stack
    count = 24
    made = test_stack.make_frames(tmp_path / "made", range(1, count + 1))
    expected = [test_stack.source(p) for p in made]
    watched = tmp_path / "watched"
    watched.mkdir()
    live = served["root"] / "live_stack.nxs"
    stacker = subprocess.Popen([BIN, "stack", "--watch", str(watched), "--out", str(live), "--frames", str(count),
                                "--flush-every", "1", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    domain = "/live_stack.nxs"
    done = threading.Event()
    problems, reads = [], {"rest": 0, "eval": 0}

    def rest_reader(k):
        s = requests.Session()
        s.auth = auth()
        rng = np.random.default_rng(k)
        while not done.is_set():
            try:
                r = s.get(f"{eval_server.url}/", params={"domain": domain}, timeout=60)
                if r.status_code == 404 or (r.status_code == 400 and "creating" in r.text):
                    time.sleep(0.02)  # not there yet
                    continue
                status_id = dataset_id(eval_server, "entry/stacking/frame_status", domain=domain)
                data_id = dataset_id(eval_server, "entry/instrument/detector/data", domain=domain)
                st = s.get(f"{eval_server.url}/datasets/{status_id}/value", params={"domain": domain}, timeout=60).json()["value"]
                stored = [i for i, v in enumerate(st) if v == 1]
                if not stored:
                    continue
                i = int(rng.choice(stored))
                r = s.get(f"{eval_server.url}/datasets/{data_id}/value", timeout=60,
                          params={"domain": domain, "select": f"[{i}:{i + 1},:,:]"}, headers={"Accept": "application/octet-stream"})
                if r.status_code != 200:
                    problems.append(f"REST frame {i}: {r.status_code} {r.text[:200]}")
                    continue
                got = np.frombuffer(r.content, "<i4").reshape(test_stack.SHAPE)
                if not np.array_equal(got, expected[i]):
                    problems.append(f"REST frame {i}: pixels of another frame or garbage")
                reads["rest"] += 1
            except Exception as e:
                problems.append(f"REST: {e!r}"[:300])

    eval_code = """
    local a = ...
    local f = nx.load(a.path)
    local st = f.entry.stacking.frame_status:read()
    local out = {}
    for i = 0, st.size - 1 do
      if st[i] == 1 then out[#out + 1] = {i, f.entry.instrument.detector.data[i]:sum()} end
    end
    return out
    """

    def eval_reader():
        while not done.is_set():
            if not live.exists():
                time.sleep(0.02)
                continue
            r = evaluate(eval_server, eval_code, {"path": domain})
            if r.status_code != 200:
                # the fixture's short time limit can stop an evaluation on a busy machine
                # (evaluations run at nice 10): that is no wrong read
                if "creating" not in r.text and "not found" not in r.text and f"time limit of {EVAL_TIMEOUT}.0 s" not in r.text:
                    problems.append(f"eval: {r.status_code} {r.text[:200]}")
                continue
            for i, total in r.json()["result"] or []:
                if total != int(expected[i].astype(np.int64).sum()):
                    problems.append(f"eval frame {i}: sum {total}, expected {expected[i].astype(np.int64).sum()}")
            reads["eval"] += 1

    threads = [threading.Thread(target=rest_reader, args=(k,)) for k in range(4)] + \
              [threading.Thread(target=eval_reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for k, p in enumerate(made):
            test_stack.write_then_rename(p, watched / p.name)
            time.sleep(0.1)
            if k == count // 2:  # half grown: both kinds of reader have read it (slow ones too)
                deadline = time.time() + 120
                while (reads["rest"] == 0 or reads["eval"] == 0) and time.time() < deadline:
                    time.sleep(0.05)
        out, err = stacker.communicate(timeout=300)
        assert stacker.returncode == 0, err
        while_growing = dict(reads)
        deadline = time.time() + 120  # then reads of the complete file, enough of them
        while (reads["rest"] < 20 or reads["eval"] < 5) and time.time() < deadline:
            time.sleep(0.05)
    finally:
        done.set()
        for t in threads:
            t.join(120)
        stacker.kill()
    assert not problems, problems[:10]
    assert while_growing["rest"] > 0 and while_growing["eval"] > 0, while_growing
    assert reads["rest"] >= 20 and reads["eval"] >= 5, reads
    with h5py.File(live, "r") as f:
        assert all(np.array_equal(f["/entry/instrument/detector/data"][i], expected[i]) for i in range(count))
    live.unlink()


def test_a_stacker_restarted_while_its_stack_is_served_resumes(served, server, tmp_path):
    """HDF5 1.10 lets a SWMR writer open a file only while no reader holds it. The
    server closes files no request reached for 2 s, so a stacker killed and restarted
    while its stack is served resumes instead of failing with "another process has the
    file open"."""
    import test_stack
    made = test_stack.make_frames(tmp_path / "made", range(1, 7))
    watched = tmp_path / "watched"
    watched.mkdir()
    live = served["root"] / "restarted.nxs"
    domain = "/restarted.nxs"
    command = [BIN, "stack", "--watch", str(watched), "--out", str(live), "--frames", "6", "--quiet"]

    def stored():
        status_id = dataset_id(server, "entry/stacking/frame_status", domain=domain)
        return get(server, f"/datasets/{status_id}/value", domain=domain).json()["value"]

    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for p in made[:3]:
            test_stack.write_then_rename(p, watched / p.name)
        deadline = time.time() + 120
        while time.time() < deadline:
            if live.exists() and get(server, "/", domain=domain).status_code == 200 and stored().count(1) == 3:
                break
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        first.kill()
    assert stored().count(1) == 3  # the server holds the file now
    time.sleep(3)  # idle: the server lets go
    for p in made[3:]:
        test_stack.write_then_rename(p, watched / p.name)
    r = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "resuming: 3 frames already stored" in r.stderr
    assert stored() == [1] * 6
    data_id = dataset_id(server, "entry/instrument/detector/data", domain=domain)
    got = requests.get(f"{server.url}/datasets/{data_id}/value", auth=auth(), timeout=60,
                       params={"domain": domain, "select": "[5:6,:,:]"}, headers={"Accept": "application/octet-stream"})
    assert np.array_equal(np.frombuffer(got.content, "<i4").reshape(test_stack.SHAPE), test_stack.source(made[5]))
    live.unlink()


# ---------------------------------------------------------------- load

def test_load_32_clients(server):
    """32 concurrent clients x 500 requests (metadata and values), zero errors. The
    sanitized server answers each request ~10x slower (16,000 requests took 178 s of the
    900 s limit): there 32 clients send 120 each, the same concurrency in a quarter of it."""
    did = dataset_id(server, "entry/data/frames")
    gid = root_id(server)
    requests_per_client = 120 if os.environ.get("NXLUA_SANITIZED") == "1" else 500

    def client(k):
        s = requests.Session()
        s.auth = auth()
        errors = 0
        for i in range(requests_per_client):
            if i % 3 == 0:
                r = s.get(f"{server.url}/datasets/{did}/value", params={"domain": "/sample.nxs", "select": f"[{(i + k) % 10}:{(i + k) % 10 + 1},0:64,0:64]"},
                          headers={"Accept": "application/octet-stream"}, timeout=120)
                ok = r.status_code == 200 and len(r.content) == 64 * 64 * 4 and \
                    np.frombuffer(r.content, "<i4")[0] == FRAMES[(i + k) % 10, 0, 0]
            elif i % 3 == 1:
                r = s.get(f"{server.url}/groups/{gid}", params={"domain": "/sample.nxs", "include_links": "1"}, timeout=120)
                ok = r.status_code == 200 and "entry" in r.json()["links"]
            else:
                r = s.get(f"{server.url}/datasets/{did}", params={"domain": "/sample.nxs"}, timeout=120)
                ok = r.status_code == 200 and r.json()["shape"]["dims"] == [10, 64, 64]
            errors += 0 if ok else 1
        return errors

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        errors = list(pool.map(client, range(32), timeout=900))
    assert sum(errors) == 0
    assert get(server, "/about").status_code == 200  # still up


# ---------------------------------------------------------------- remote evaluation

@pytest.fixture(scope="module")
def eval_server(served, tmp_path_factory):
    # 2 s stops the endless loops below soon; a sanitized worker at nice 10 on a loaded
    # machine needs longer for the memory-limit cases to reach their limit first
    s = Server(served["root"], served["users"], "--allow-eval", "--eval-timeout", EVAL_TIMEOUT, "--eval-memory", "64",
               log=tmp_path_factory.mktemp("log") / "eval.log")
    yield s
    assert s.stop() == 0


def test_parallel_first_requests_check_the_password_once(served, tmp_path):
    """A client that opens its connections in parallel (h5pyd, a viewer) sends the same new
    Authorization header on each: one bcrypt check answers them all (it was one per
    connection, ~0.2 s of CPU each, at the start of every live run). A wrong password sent
    in parallel is refused on every request, and not remembered."""
    log = tmp_path / "auth.log"
    s = Server(served["root"], served["users"], "--log-level", "debug", log=log)

    def checks():
        return log.read_text().count("checking a password (bcrypt)")
    try:
        def one(password):
            return requests.get(s.url + "/", params={"domain": "/sample.nxs"}, auth=(USER, password), timeout=120).status_code
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert list(pool.map(one, [PASSWORD] * 8)) == [200] * 8
            assert checks() == 1
            assert list(pool.map(one, ["wrong"] * 8)) == [401] * 8
        wrong = checks() - 1
        assert 1 <= wrong <= 8
        assert one(PASSWORD) == 200 and checks() == 1 + wrong       # remembered
        assert one("wrong") == 401 and checks() == 2 + wrong         # a refusal is not
    finally:
        assert s.stop() == 0


def process_nice(pid):
    """Nice value of a process's main thread (field 19 of /proc/PID/stat)."""
    return int(pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not pathlib.Path("/proc/self/autogroup").exists(), reason="kernel without sched_autogroup")
def test_server_and_its_evaluations_yield_the_cpu_to_a_stacker(served, tmp_path):
    """`nxlua serve` runs at nice 10 by default (its session too when it leads one: a
    service, setsid), its evaluation workers 5 steps lower; --nice 0 keeps the priority it
    was started with (workers at 10 then). Each worker leads a session of its own, whose
    autogroup has the server's nice value (at least 10): an evaluation does not take the
    server's share, and gets one as large."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    for extra, main, worker, group in [((), max(base, 10), min(19, max(base, 10) + 5), 10),
                                       (("--nice", "0"), base, max(10, base + 5), 0)]:
        s = Server(served["root"], served["users"], "--allow-eval", *extra, log=tmp_path / "nice.log", new_session=True)
        try:
            r = evaluate(s, "return 1")
            assert r.status_code == 200, r.text
            assert process_nice(s.proc.pid) == main
            assert {v for vs in thread_nices(s.proc.pid).values() for v in vs} == {main}, thread_nices(s.proc.pid)
            assert pathlib.Path(f"/proc/{s.proc.pid}/autogroup").read_text().split()[-1] == str(group)
            workers = child_pids(s.proc.pid)
            assert workers and all(process_nice(w) == worker for w in workers), (workers, [process_nice(w) for w in workers])
            assert all({v for vs in thread_nices(w).values() for v in vs} == {worker} for w in workers), [thread_nices(w) for w in workers]
            for w in workers:
                assert os.getsid(w) == w != os.getsid(s.proc.pid)
                assert pathlib.Path(f"/proc/{w}/autogroup").read_text().split()[-1] == str(max(10, main))
            # every server thread asks for a short slice (woken sooner for a request), the
            # workers' evaluations are batch work at the kernel's default
            if (default := default_slice()) is not None:
                assert {n for _, n in thread_slices(s.proc.pid)} == {LIVE_SLICE}, thread_slices(s.proc.pid)
                for w in workers:
                    assert {n for _, n in thread_slices(w)} == {default}, (default, thread_slices(w))
        finally:
            assert s.stop() == 0
    r = subprocess.run([BIN, "serve", str(served["root"]), "--nice", "-1"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--nice takes an integer of at least 0, not '-1'" in r.stderr, r.stderr


def evaluate(server, code, args=None, who=None):
    return requests.post(server.url + "/nxlua/eval", json={"code": code, "args": args or {}},
                         auth=who or auth(), timeout=120)


def test_eval_returns_json_and_binary_arrays(eval_server):
    r = evaluate(eval_server, "local a = ... return a.x * 2, 'hi', {1, 2, {k = true}}", {"x": 21})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == [42, "hi", [1, 2, {"k": True}]]
    code = "local a = ... return nx.load(a.path).entry.data.frames:sum(0)"
    r = evaluate(eval_server, code, {"path": "/sample.nxs"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/octet-stream"
    shape = [int(n) for n in r.headers["X-NXLua-Shape"].split(",")]
    got = np.frombuffer(r.content, np.dtype(r.headers["X-NXLua-DType"]).newbyteorder("<")).reshape(shape)
    assert (got == FRAMES.sum(0)).all()
    r = evaluate(eval_server, "return nx.load('/sub/nested.nxs').entry.data.frames[2]:max()")
    assert r.json()["result"] == int(FRAMES[2].max())


@pytest.mark.parametrize("code,expected", [
    ("return io.open('/etc/passwd'):read('a')", "io"),
    ("return os.execute('true')", "os"),
    ("return require('io')", "require"),
    ("return package.loaded.io", "package"),
    ("return debug.getregistry()", "debug"),
    ("return string.dump(function() end)", "dump"),
    ("return load(string.char(27) .. 'Lua')", "binary"),
    ("return load('\\27Lua\\84\\0')()", "attempt to call a nil value"),
    ("getmetatable('').__index = {}; return 1", "index a nil value"),
    ("return setmetatable(getmetatable(''), nil)", "setmetatable"),
    ("local f = nx.load('/sample.nxs'); return getmetatable(f).__index", "index a nil value"),
    ("local a = array.zeros({2}); getmetatable(a).__gc = nil; return 1", "index a nil value"),
    ("return nx.load('/../outside/secret.nxs')", "'..' is not allowed"),
    ("return nx.load('/escape.nxs')", "outside the served folder"),
    ("return dofile('/etc/passwd')", "dofile"),
    ("return collectgarbage('stop')", "null"),  # only "count" answers
    ("return nx.group", "null"),  # the sandbox's nx only loads
])
def test_eval_sandbox_escapes_fail(eval_server, code, expected):
    """Each escape fails with a clear error (400), or gets nothing (load's nil and message)."""
    r = evaluate(eval_server, code)
    if r.status_code == 200:
        assert r.json()["result"] is None or r.json()["result"][0] is None, r.text
        assert expected in r.text, r.text
    else:
        assert r.status_code == 400, r.text
        assert expected in r.json()["error"], r.json()["error"]
    assert evaluate(eval_server, "return 1 + 1").json()["result"] == 2


def test_eval_errors_name_domains_not_server_paths(eval_server, served):
    r = evaluate(eval_server, "return nx.load('/notes.txt')")
    assert r.status_code == 400 and "/notes.txt" in r.json()["error"], r.text
    assert str(served["root"]) not in r.json()["error"]


def test_eval_cannot_write(eval_server, served):
    before = (served["root"] / "sample.nxs").read_bytes()
    r = evaluate(eval_server, "local f = nx.load('/sample.nxs'); f.entry.attrs.new = 1; return 1")
    assert r.status_code == 400 and "read-only" in r.json()["error"], r.text
    assert (served["root"] / "sample.nxs").read_bytes() == before


# an endless loop ends at the time limit or the instruction budget, whichever comes first
# (a sanitized worker at nice 10 can use up 10^9 instructions within EVAL_TIMEOUT)
ENDLESS = "time limit|instruction limit"


@pytest.mark.parametrize("code,expected", [
    ("while true do end", ENDLESS),
    ("pcall(function() while true do end end) return 'escaped'", ENDLESS),
    ("while true do pcall(function() while true do end end) end", ENDLESS),
    ("local co = coroutine.wrap(function() while true do end end) pcall(co) return 'escaped'", ENDLESS),
    ("local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1e5) .. i end", "memory limit"),
    ("local t = {} pcall(function() for i = 1, 1e9 do t[i] = string.rep('x', 1e5) .. i end end) t = nil return 'escaped'", "time limit|memory"),
    ("return string.rep('x', 1e9)", "memory limit"),
    ("local t = {} for i = 1, 100 do t[i] = array.zeros({1024, 1024, 4}) end return #t", "array memory limit"),
    ("return array.zeros({100000, 100000})", "array memory limit"),
    ("return array.zeros({1000, 1000, 300}):sum()", "array memory limit"),
])
def test_eval_limits(eval_server, code, expected):
    r = evaluate(eval_server, code)
    assert r.status_code == 400, r.text[:500]
    import re
    assert re.search(expected, r.json()["error"]), r.json()["error"][:500]
    # the server stays up and answers the next request
    assert evaluate(eval_server, "return 6 * 7").json()["result"] == 42
    with h5file(eval_server) as f:
        assert (f["entry/data/frames"][1] == FRAMES[1]).all()


def test_eval_needs_a_user(served, tmp_path):
    s = Server(served["root"], served["users"], "--allow-eval", "--allow-anonymous", log=tmp_path / "anon-eval.log")
    try:
        r = requests.post(s.url + "/nxlua/eval", json={"code": "return 1"}, timeout=60)
        assert r.status_code == 403 and "authenticated" in r.json()["error"]
        assert evaluate(s, "return 1", who=(USER, "wrong")).status_code == 401
        assert evaluate(s, "return 1").json()["result"] == 1
    finally:
        assert s.stop() == 0


def test_eval_bad_requests(eval_server):
    r = requests.post(eval_server.url + "/nxlua/eval", data="not json", auth=auth(), timeout=60)
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = requests.post(eval_server.url + "/nxlua/eval", json={"args": {}}, auth=auth(), timeout=60)
    assert r.status_code == 400 and "code" in r.json()["error"]
    r = evaluate(eval_server, "return (")
    assert r.status_code == 400 and "syntax error" in r.json()["error"]
    r = evaluate(eval_server, "return nx.load('/sample.nxs').entry")
    assert r.status_code == 400 and "cannot send" in r.json()["error"]


# ---------------------------------------------------------------- TLS

def test_tls(served, tmp_path, monkeypatch):
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        pytest.skip(f"openssl cannot make a test certificate: {r.stderr[-300:]}")
    s = Server(served["root"], served["users"], "--tls-cert", str(cert), "--tls-key", str(key), log=tmp_path / "tls.log")
    try:
        url = f"https://127.0.0.1:{s.port}"
        r = requests.get(url + "/", params={"domain": "/sample.nxs"}, auth=auth(), verify=str(cert), timeout=60)
        assert r.status_code == 200 and r.json()["root"].startswith("g-")
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(s.url + "/about", timeout=10)  # plain HTTP is not served
        monkeypatch.setenv("H5PYD_VERIFY_CERT", "False")  # the test certificate is self-signed
        with h5pyd.File("/sample.nxs", "r", endpoint=url, username=USER, password=PASSWORD) as f:
            assert (f["entry/data/frames"][4] == FRAMES[4]).all()
    finally:
        assert s.stop() == 0
    r = subprocess.run([BIN, "serve", str(served["root"]), "--users", str(served["users"]), "--port", "0",
                        "--tls-cert", str(cert)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "--tls-key" in r.stderr
