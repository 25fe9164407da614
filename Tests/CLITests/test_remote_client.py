"""End-to-end tests of the Lua client nx.remote (docs/remote.md, "The client") against
`nxlua serve` on loopback: files written by h5py and by nxlua, read through the client and
compared with the local reads of the same files (nx.load) and with h5py's numbers.

Servers come from test_serve's Server helper (port 0, a users file, log checked for
sanitizer reports when they stop)."""
import os
import pathlib
import socket
import struct
import subprocess
import textwrap
import threading
import time

import h5py
import numpy as np
import pytest

from conftest import BIN
from test_serve import FRAMES, PASSWORD, USER, Server, make_sample

SANITIZED = bool(os.environ.get("NXLUA_SANITIZED"))


def make_nxlua_file(path, tmp):
    """A file written by nxlua itself: NXdata with axes (float slices), a soft link, units."""
    script = tmp / "write.lua"
    script.write_text(textwrap.dedent(f"""
        local f <close> = nx.load("{path}", "w")
        f.entry = nx.group("NXentry", {{title = "written by nxlua"}})
        local y = array.linspace(-1, 1, 30)
        local x = array.arange(40) * 0.5
        local counts = array.arange(12 * 30 * 40):reshape({{12, 30, 40}}) % 97
        f.entry.data = nx.data{{signal = nx.field(counts, {{name = "counts", chunks = {{1, 30, 40}}, compression = "gzip"}}),
                               axes = {{nx.field(array.arange(12), {{name = "t"}}), nx.field(y, {{name = "y"}}),
                                        nx.field(x, {{name = "x"}})}}}}
        f.entry.data.counts.attrs.units = "counts"
        f.entry.data.counts.attrs.long_name = "detector counts"
        f.entry.sample = nx.group("NXsample", {{temperature = 300.5, name = "Si"}})
        f.entry.sample.temperature.attrs.units = "K"
        f.entry.shortcut = nx.link("/entry/data/counts")
        f.entry.gone = nx.link("/entry/nowhere")
    """))
    r = subprocess.run([BIN, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("remote")
    root = base / "data"
    (root / "sub").mkdir(parents=True)
    outside = base / "outside"
    outside.mkdir()
    make_sample(root / "sample.nxs")
    make_nxlua_file(root / "nxlua.nxs", base)
    make_sample(root / "sub" / "nested.nxs")
    r = subprocess.run([BIN, "-e", f"""
        local f <close> = nx.load("{root / 'ext.nxs'}", "w")
        f.entry = nx.group("NXentry")
        f.entry.frames = nx.link("/entry/data/frames", "sample.nxs")
        f.entry.nowhere = nx.link("/entry/nothing", "sample.nxs")
    """], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    make_sample(outside / "secret.nxs")
    os.symlink(outside / "secret.nxs", root / "escape.nxs")
    users = base / "users"
    r = subprocess.run([BIN, "serve", "adduser", str(users), USER], input=PASSWORD + "\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return {"root": root, "users": users, "base": base}


@pytest.fixture(scope="module")
def server(folder, tmp_path_factory):
    # a small max_request_size: the client must split big reads (image is 1 MiB)
    s = Server(folder["root"], folder["users"], "--max-request-size", "100000", "--allow-eval",
               log=tmp_path_factory.mktemp("log") / "serve.log")
    yield s
    assert s.stop() == 0


def run_lua(code, tmp_path, env=None, timeout=120):
    script = tmp_path / "client.lua"
    script.write_text(textwrap.dedent(code))
    e = {k: v for k, v in os.environ.items() if not k.startswith("NXLUA_")}
    e.update(env or {})
    return subprocess.run([BIN, str(script)], capture_output=True, text=True, timeout=timeout, env=e)


def connect(server, extra=""):
    return f'local r = nx.remote("{server.url}", {{user = "{USER}", password = "{PASSWORD}"{extra}}})\n'


def ok(r):
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.mark.parametrize("name", ["sample.nxs", "nxlua.nxs"])
def test_tree_text_equals_local(server, folder, tmp_path, name):
    out = ok(run_lua(connect(server) + f"""
        local g = r:load("/{name}")
        local l = nx.load("{folder['root'] / name}")
        io.write(tostring(g), "\\n=====\\n", tostring(l), "\\n=====\\n")
        for _, path in ipairs({{"entry", "entry/data"}}) do
          local a, b = g[path], l[path]
          io.write(tostring(a) == tostring(b) and "same\\n" or ("differs: " .. path .. "\\n"))
        end
        -- short form: captured through print
        local lines = {{}}
        local p = print
        print = function(s) lines[#lines + 1] = s end
        g.entry:tree("short"); l.entry:tree("short")
        print = p
        io.write(lines[1] == lines[2] and "short same\\n" or "short differs\\n")
    """, tmp_path))
    remote, local, rest = out.split("=====\n")
    assert remote.strip() == local.strip()
    assert "entry:NXentry" in remote
    assert rest.count("differs") == 0 and "short same" in rest


def test_attributes_strings_compounds(server, tmp_path):
    out = ok(run_lua(connect(server) + """
        local g = r:load("/sample.nxs")
        local e = g.entry
        print(e.attrs.count_time, e.attrs.fixed, e.count_time, e.attrs.shape_attr:sum(), e.attrs.shape_attr.dtype)
        local names = {}
        for k in pairs(e.attrs) do names[#names + 1] = k end
        print(table.concat(names, ","), #e.attrs)
        print(e.title, e.title.nxvalue, e.vnames:read()[3], e.names[1], e.scalar_int.nxvalue)
        local p = e.peaks:read()
        print(#p, p[1].h, p[1].k, p[1].I, p[2].I, e.mixed[0].n, e.mixed[0].name)
        print(e.flags:read():totable()[1], e.flags.dtype, e.big_endian:read():sum(), e.empty.shape[1], e.empty.shape[2])
        print(e.data.frames.units, e.data.frames.attrs.units, e.data.frames.dtype, e.data.frames.ndim, e.data.frames.size)
    """, tmp_path))
    lines = out.splitlines()
    assert lines[0] == "1.5\tfixedlen\t1.5\t21\tuint16"
    assert lines[1] == "NX_class,count_time,fixed,shape_attr\t4"
    assert lines[2] == "a title\ta title\tÅngström\tcde\t-42"
    assert lines[3] == "2\t1\t0\t3.5\t2.25\t7\tseven"
    assert lines[4] == "true\tbool\t-0.5\t0\t3"
    assert lines[5] == "counts\tcounts\tint32\t3\t40960"


def test_hyperslabs_equal_h5py(server, folder, tmp_path):
    selections = ["5", "0:10:2, 10:14, 7", "1:9:3, ::5, 60:", "..., -1", "::-3, 4, ::-7", "-1, -2:, 3:1:-1"]
    lua_list = ", ".join(f'"{s}"' for s in selections)
    out = ok(run_lua(connect(server) + f"""
        local c = r:load("/sample.nxs").entry.data.frames
        for _, s in ipairs({{{lua_list}}}) do
          local a = c[s]
          print(table.concat(a.shape, "x"), a:sum(), a:max())
        end
        local img = r:load("/sample.nxs").entry.image
        print(img[100]:sum(), img["100:200, 7"]:sum())
    """, tmp_path))
    lines = out.splitlines()
    with h5py.File(folder["root"] / "sample.nxs") as f:
        d = f["entry/data/frames"]
        everything = d[...]
        for s, line in zip(selections, lines):
            # h5py reads forward steps itself; negative ones (which it refuses) by NumPy
            ref = np.asarray(eval(f"everything[{s}]" if "-" in s.replace("-1,", "") and "::-" in s or ":1:-1" in s else f"d[{s}]"))
            assert line == f"{'x'.join(map(str, ref.shape))}\t{int(ref.sum())}\t{int(ref.max())}", s
        img = f["entry/image"]
        assert lines[-1] == f"{int(img[100].sum())}\t{int(img[100:200, 7].sum())}"


def test_big_read_split_by_max_request_size(server, folder, tmp_path):
    """image is 1 MiB, the server takes 100 kB per request: the client splits, and the
    server's log shows the value requests."""
    before = pathlib.Path(server.log_path).read_text().count("/value")
    out = ok(run_lua(connect(server) + f"""
        local img = r:load("/sample.nxs").entry.image
        local a = img:read()
        local l = nx.load("{folder['root'] / 'sample.nxs'}").entry.image:read()
        print(table.concat(a.shape, "x"), a:eq(l):all(), a:sum() == l:sum(), a[511][511])
    """, tmp_path))
    assert out.split() == ["512x512", "true", "true", str(512 * 512 - 1)]
    time.sleep(0.5)  # the log line is written after the response
    after = pathlib.Path(server.log_path).read_text().count("/value")
    assert after - before >= 11  # 1 MiB in pieces of at most 100 kB


def test_reductions_equal_local(server, folder, tmp_path):
    out = ok(run_lua(connect(server) + f"""
        local c = r:load("/sample.nxs").entry.data.frames
        local l = nx.load("{folder['root'] / 'sample.nxs'}").entry.data.frames
        local function same(a, b) return a == b or (type(a) ~= "number" and a:eq(b):all()) end
        print(same(c:sum(0), l:sum(0)), same(c:sum({{1, 2}}), l:sum({{1, 2}})), c:sum() == l:sum())
        print(same(c:mean(0), l:mean(0)), c:mean() == l:mean(), same(c:max(2), l:max(2)), c:min() == l:min())
        print(same(c:sum(0, true), l:sum(0, true)), table.concat(c:sum(0, true).shape, "x"))
        local n, rows = 0, 0
        for first, block in c:blocks(3) do n = n + block:sum(); rows = rows + block.shape[1] end
        print(n == l:sum(), rows)
        local img = r:load("/sample.nxs").entry.image   -- pieces of 100 kB inside each block
        print(img:sum(0):sum() == nx.load("{folder['root'] / 'sample.nxs'}").entry.image:sum())
    """, tmp_path))
    assert out.split() == ["true"] * 7 + ["true", "1x64x64", "true", "10", "true"]
    assert FRAMES.sum() == FRAMES.sum(0).sum()


def test_nxdata_default_and_float_slices(server, folder, tmp_path):
    out = ok(run_lua(connect(server) + f"""
        local g = r:load("/nxlua.nxs")
        local l = nx.load("{folder['root'] / 'nxlua.nxs'}")
        local d, ld = g:default(), l:default()
        print(d.nxpath, d.nxsignal.nxname, #d.nxaxes, d.nxaxes[2].nxname, d.nxclass)
        local a, b = d["2, -0.5:0.5, 1.0:4.0"], ld["2, -0.5:0.5, 1.0:4.0"]
        print(table.concat(a.shape, "x"), a:eq(b):all(), d[3]:sum() == ld[3]:sum())
        print(g.entry.sample.temperature.nxvalue, g.entry.sample.temperature.units, g.entry.sample.name.nxvalue)
        print(#g.entry.NXdata, g.entry.NXdata[1].nxname, #g:find("NXsample"), g:find("NXsample")[1].nxpath)
        print(g.entry.shortcut.nxpath, table.concat(g["entry/shortcut"].shape, "x"), g["/entry/data/counts"].nxclass)
        print(pcall(function() return g.entry.gone end))
        print(g.entry.data.counts.parent.nxpath, g.entry.data.counts.root.nxclass, g.entry.data.counts.nxfilename)
        print(table.concat(g.entry:keys(), ","), #g.entry, g.entry:child("title").nxvalue)
        local k = {{}}
        for name, obj in pairs(g.entry) do k[#k + 1] = name .. ":" .. obj.nxclass end
        print(table.concat(k, ","))
        print(g.entry.data.counts.compression, table.concat(g.entry.data.counts.chunks, "x"), g.entry.data.counts.maxshape[1])
    """, tmp_path))
    lines = out.splitlines()
    assert lines[0] == "/entry/data\tcounts\t3\ty\tNXdata"
    assert lines[1].split("\t")[1:] == ["true", "true"]
    assert lines[2] == "300.5\tK\tSi"
    assert lines[3] == "1\tdata\t1\t/entry/sample"
    assert lines[4] == "/entry/shortcut\t12x30x40\tNXfield"
    assert lines[5].startswith("false\t") and "soft link to /entry/nowhere" in lines[5]
    assert lines[6] == f"/entry/data\tNXroot\t{server.url}/nxlua.nxs"
    assert lines[7] == "data,gone,sample,shortcut,title\t5\twritten by nxlua"
    assert lines[8] == "data:NXdata,sample:NXsample,shortcut:NXfield,title:NXfield"
    assert lines[9].split("\t")[:2] == ["gzip", "1x30x40"]  # creationProperties.filters, as HSDS sends them


def test_external_links(server, folder, tmp_path):
    """Shown as links (the same tree text), followed to the other domain of the server."""
    out = ok(run_lua(connect(server) + f"""
        local g = r:load("/ext.nxs")
        local l = nx.load("{folder['root'] / 'ext.nxs'}")
        print(tostring(g) == tostring(l))
        print(g.entry.frames[3]:sum(), g.entry.frames.nxfilename)
        print(pcall(function() return g.entry.nowhere end))
    """, tmp_path))
    lines = out.splitlines()
    assert lines[0] == "true"
    assert lines[1] == f"{int(FRAMES[3].sum())}\t{server.url}/sample.nxs"
    assert lines[2].startswith("false\t") and "external link to sample.nxs:/entry/nothing, which does not exist" in lines[2]


def test_ls_and_eval(server, folder, tmp_path):
    out = ok(run_lua(connect(server) + """
        local list = r:ls("/")
        local names = {}
        for _, e in ipairs(list) do names[#names + 1] = e.name .. "=" .. e.class .. (e.lastModified and "+t" or "") end
        print(table.concat(names, ","))
        print(#r:ls("/sub/"), r:ls("/sub")[1].name)
        local sizes = {}
        for _, e in ipairs(list) do sizes[#sizes + 1] = e.name .. "=" .. tostring(e.size) end
        print(table.concat(sizes, ","))
        local s = r:eval("local a = ... ; return nx.load(a.path).entry.data.frames:sum(0)", {path = "/sample.nxs"})
        print(s.dtype, table.concat(s.shape, "x"), s:sum())
        local t = r:eval("return {n = 1 + ..., list = {1, 2, 'three'}, ok = true}", 41)
        print(t.n, t.list[3], t.ok)
        print(r:eval("return 'text'"), r:eval("return nil"))
        print(pcall(r.eval, r, "error('boom from the server')"))
        print(pcall(r.eval, r, "return nx.load('/nope.nxs')"))
    """, tmp_path))
    lines = out.splitlines()
    assert lines[0] in ("/escape.nxs=domain+t,/ext.nxs=domain+t,/nxlua.nxs=domain+t,/sample.nxs=domain+t,/sub=folder+t",
                        "/ext.nxs=domain+t,/nxlua.nxs=domain+t,/sample.nxs=domain+t,/sub=folder+t"), lines[0]
    assert lines[1] == "1\t/sub/nested.nxs"
    sizes = dict(item.split("=") for item in lines.pop(2).split(","))
    assert sizes.pop("/sub") == "nil", sizes    # folders have no size
    assert sizes == {name: str((pathlib.Path(folder["root"]) / name.lstrip("/")).stat().st_size) for name in sizes}, sizes
    assert lines[2] == f"int64\t64x64\t{int(FRAMES.sum())}"
    assert lines[3] == "42\tthree\ttrue"
    assert lines[4] == "text\tnil"
    assert lines[5].startswith("false\t") and "boom from the server" in lines[5]
    assert lines[6].startswith("false\t") and "/nope.nxs" in lines[6]


def test_errors_401_403_404_413(server, tmp_path):
    out = ok(run_lua(f"""
        local bad = nx.remote("{server.url}", {{user = "{USER}", password = "wrong"}})
        print(pcall(bad.load, bad, "/sample.nxs"))
        local r = nx.remote("{server.url}", {{user = "{USER}", password = "{PASSWORD}"}})
        print(pcall(r.load, r, "/nope.nxs"))
        print(pcall(r.load, r, "/../outside/secret.nxs"))
        print(pcall(r.load, r, "/escape.nxs"))
        print(pcall(r.eval, r, "return '" .. string.rep("x", 1100000) .. "'"))
        print(pcall(r.ls, r, "/missing/"))
    """, tmp_path))
    lines = out.splitlines()
    assert lines[0].startswith("false\t") and "401 unauthorized" in lines[0] and f"user '{USER}'" in lines[0]
    assert "404 not found" in lines[1] and "/nope.nxs" in lines[1]
    assert "403 forbidden" in lines[2]
    assert "403 forbidden" in lines[3] and "/escape.nxs" in lines[3]
    assert "413 too big" in lines[4] and "1 MiB" in lines[4]
    assert "404 not found" in lines[5]


def test_writing_refused(server, tmp_path):
    out = ok(run_lua(connect(server) + """
        local g = r:load("/sample.nxs")
        print(pcall(function() g.entry.new = 1 end))
        print(pcall(function() g.entry.data.frames[0] = 1 end))
        print(pcall(function() g.entry.attrs.x = "y" end))
        print(g.entry.append)  -- a group has no such method: a child lookup
        -- one NXfield class for both trees: the writing methods are there and refuse
        print(pcall(g.entry.data.frames.append, g.entry.data.frames, 1))
        print(pcall(g.entry.data.frames.resize, g.entry.data.frames, 1))
    """, tmp_path))
    lines = out.splitlines()
    for line in lines[:3] + lines[4:6]:
        assert line.startswith("false\t") and "read-only remote file" in line
    assert "/sample.nxs: /entry" in lines[0]
    assert lines[3] == "nil"
    assert "/sample.nxs: /entry/data/frames: read-only remote file (appending" in lines[4]


def test_password_sources(server, tmp_path):
    code = f"""
        local r = nx.remote("{server.url}", {{user = "{USER}"}})
        print(r:load("/sample.nxs").entry.title.nxvalue)
    """
    assert ok(run_lua(code, tmp_path, env={"NXLUA_PASSWORD": PASSWORD})).strip() == "a title"
    r = run_lua(code, tmp_path)  # stdin is not a terminal: no prompt
    assert r.returncode != 0 and "NXLUA_PASSWORD" in r.stderr and "no password" in r.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_retry_after_server_restart(folder, tmp_path):
    """The server restarts between two reads: the kept-alive connection is dead, the
    client reconnects and the second read succeeds."""
    port = free_port()
    log = tmp_path / "serve.log"
    args = ["--port", str(port), "--max-request-size", "100000"]
    s = Server(folder["root"], folder["users"], *args, log=log)
    flag = tmp_path / "restarted"
    proc = subprocess.Popen([BIN, "-e", textwrap.dedent(f"""
        local r = nx.remote("{s.url}", {{user = "{USER}", password = "{PASSWORD}"}})
        local c = r:load("/sample.nxs").entry.data.frames
        print("first", c[1]:sum())
        io.stdout:flush()
        while not io.open("{flag}") do os.execute("sleep 0.05") end
        print("second", c[2]:sum(), c:sum(0):sum())
    """)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.split() == ["first", str(int(FRAMES[1].sum()))], first + proc.stderr.read()
        assert s.stop() == 0
        s = Server(folder["root"], folder["users"], *args, log=tmp_path / "serve2.log")
        flag.write_text("go")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.split() == ["second", str(int(FRAMES[2].sum())), str(int(FRAMES.sum()))]
    finally:
        if proc.poll() is None:
            proc.kill()
        s.stop()


def test_timeout_against_silent_socket(tmp_path):
    """A socket that accepts and never answers: the read times out with a clear error."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    held = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                pass
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        r = run_lua(f"""
            local r = nx.remote("http://127.0.0.1:{port}", {{user = "u", password = "p", timeout = 1}})
            local t = os.time()
            print(pcall(r.load, r, "/x.nxs"))
        """, tmp_path, timeout=60)
        out = ok(r)
        assert out.startswith("false\t") and "read timeout" in out and f"127.0.0.1:{port}" in out
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        listener.close()


def test_bad_arguments(tmp_path):
    r = run_lua("""
        print(pcall(nx.remote, "ftp://x"))
        print(pcall(nx.remote, "http://127.0.0.1:1", {timeout = -1}))
        local r = nx.remote("http://127.0.0.1:1", {user = "u", password = "p", connect_timeout = 1, retries = 0})
        print(pcall(r.load, r, "/x.nxs"))
    """, tmp_path)
    lines = ok(r).splitlines()
    assert "bad server address 'ftp://x'" in lines[0]
    assert "timeouts must be positive" in lines[1]
    assert lines[2].startswith("false\t") and "127.0.0.1:1" in lines[2]


def test_tls(folder, tmp_path):
    """https: a self-signed certificate is refused with a message pointing to the option,
    and accepted with {insecure = true}."""
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    s = Server(folder["root"], folder["users"], "--tls-cert", str(cert), "--tls-key", str(key), log=tmp_path / "tls.log")
    try:
        url = s.url.replace("http://", "https://")
        out = ok(run_lua(f"""
            local strict = nx.remote("{url}", {{user = "{USER}", password = "{PASSWORD}", retries = 0}})
            print(pcall(strict.load, strict, "/sample.nxs"))
            local r = nx.remote("{url}", {{user = "{USER}", password = "{PASSWORD}", insecure = true}})
            print(r:load("/sample.nxs").entry.data.frames[3]:sum())
        """, tmp_path))
        lines = out.splitlines()
        assert lines[0].startswith("false\t") and "TLS" in lines[0] and "insecure" in lines[0]
        assert lines[1] == str(int(FRAMES[3].sum()))
    finally:
        assert s.stop() == 0


def test_connection_errors_say_what_happened(tmp_path):
    """One clear sentence per cause: refused, connect timeout, unknown host name, reset in
    the middle of an answer (docs/remote.md, "Errors, timeouts, retries")."""
    refused = free_port()
    # a listener whose accept queue is full: the kernel drops further SYNs, connect hangs
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    waiting = [socket.socket() for _ in range(3)]
    for w in waiting:
        w.setblocking(False)
        w.connect_ex(full.getsockname())
    # a server that starts an answer and resets the connection in the middle of it
    cut = socket.socket()
    cut.bind(("127.0.0.1", 0))
    cut.listen(8)
    stop = threading.Event()

    def serve_cut_answers():
        cut.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = cut.accept()
            except OSError:
                continue
            c.settimeout(5)
            try:
                c.recv(65536)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"root\": ")
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # RST, not FIN
            except OSError:
                pass
            c.close()
    t = threading.Thread(target=serve_cut_answers, daemon=True)
    t.start()
    try:
        out = ok(run_lua(f"""
            for _, url in ipairs({{"http://127.0.0.1:{refused}", "http://127.0.0.1:{full.getsockname()[1]}",
                                  "http://no-such-host.invalid:5000", "http://127.0.0.1:{cut.getsockname()[1]}"}}) do
              local r = nx.remote(url, {{user = "u", password = "p", connect_timeout = 1, timeout = 5, retries = 0}})
              local ok, err = pcall(r.load, r, "/x.nxs")
              print(err)
            end
        """, tmp_path, timeout=120))
    finally:
        stop.set()
        t.join()
        for s in [full, cut, *waiting]:
            s.close()
    lines = out.splitlines()
    assert len(lines) == 4, out
    assert f"cannot connect to http://127.0.0.1:{refused}/" in lines[0] and "connection refused" in lines[0], lines[0]
    assert "cannot connect to" in lines[1] and "within 1.0 s (connect timeout)" in lines[1], lines[1]
    assert "cannot connect to http://no-such-host.invalid:5000/" in lines[2] and "could not be resolved" in lines[2], lines[2]
    assert any(w in lines[3] for w in ("reset in the middle", "closed in the middle", "closed the connection")), lines[3]
    for line in lines:
        assert "errno" not in line and line.count("(") == line.count(")"), line


# ---------------------------------------------------------------- stored chunks

def make_chunked(path):
    """Stacks as detectors write them, and the cases the stored-chunk path must leave to
    the decoded one: rows not whole chunks, a chunk never written, a built-in filter, a
    big-endian field; one chunk whose stored bytes are garbage."""
    import hdf5plugin
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 50, size=(10, 40, 50), dtype="u4")
    frames[3, 5, 7] = 2**31  # a hot pixel: the high bit planes are not all zero
    with h5py.File(path, "w") as f:
        f.create_dataset("bslz4", data=frames, chunks=(2, 40, 50), **hdf5plugin.Bitshuffle(cname="lz4"))
        f.create_dataset("lz4", data=frames[:6].astype("f4") / 3, chunks=(1, 40, 50), **hdf5plugin.LZ4())
        f.create_dataset("gzip", data=frames[:4].astype("i2"), chunks=(1, 40, 50), compression="gzip")
        f.create_dataset("be", data=frames[:4].astype(">i4"), chunks=(1, 40, 50))
        p = f.create_dataset("partial", shape=(4, 40, 50), dtype="u4", chunks=(1, 40, 50), fillvalue=9,
                             **hdf5plugin.Bitshuffle(cname="lz4"))
        for k in (0, 1, 3):
            p[k] = frames[k]
        d = f.create_dataset("damaged", data=frames[:4], chunks=(1, 40, 50), **hdf5plugin.Bitshuffle(cname="lz4"))
        stored = d.id.read_direct_chunk((2, 0, 0))[1]
        d.id.write_direct_chunk((2, 0, 0), stored[:12] + bytes(rng.integers(0, 256, len(stored) - 12, dtype="u1")))
    return frames


@pytest.fixture(scope="module")
def chunked(folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("chunked")
    frames = make_chunked(root / "chunks.h5")
    s = Server(root, folder["users"], log=tmp_path_factory.mktemp("log") / "serve.log")
    yield {"server": s, "root": root, "frames": frames}
    assert s.stop() == 0


def stored_request(server, name, select, accept="application/octet-stream", **params):
    import requests
    from test_serve import dataset_id
    did = dataset_id(server, name, domain="/chunks.h5")
    return requests.get(f"{server.url}/datasets/{did}/value", params={"domain": "/chunks.h5", "select": select, **params},
                        headers={"Accept": accept}, auth=(USER, PASSWORD), timeout=60)


def test_whole_chunks_travel_as_stored(chunked):
    """chunks=stored: whole chunks of rows come as the file stores them (smaller than
    the values), in the documented layout; any other read is answered decoded."""
    s, frames = chunked["server"], chunked["frames"]
    with h5py.File(chunked["root"] / "chunks.h5") as f:
        stored = [f["bslz4"].id.read_direct_chunk((k, 0, 0)) for k in (2, 4)]
    r = stored_request(s, "bslz4", "[2:6,0:40,0:50]", chunks="stored")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/x-nxlua-chunks"
    fid, flags, cd = r.headers["X-NXLua-Filters"].split(":")
    assert fid == "32008" and [int(x) for x in cd.split(",")][2] == 4  # element size among bitshuffle's parameters
    body, at = r.content, 0
    for mask, data in stored:
        m, n = struct.unpack_from("<IQ", body, at)
        assert (m, body[at + 12:at + 12 + n]) == (mask, data)
        at += 12 + n
    assert at == len(body) < frames[2:6].nbytes
    # not whole chunks, a chunk never written, a built-in filter, big-endian, JSON asked,
    # the parameter absent: the values, decoded, exactly as before
    for name, select, ref in [("bslz4", "[1:3,0:40,0:50]", frames[1:3]), ("bslz4", "[2:4,0:40,0:49]", frames[2:4, :, :49]),
                              ("partial", "[2:4,0:40,0:50]", None), ("gzip", "[0:2,0:40,0:50]", frames[:2].astype("i2")),
                              ("be", "[1:2,0:40,0:50]", frames[1:2].astype("<i4"))]:  # sent in the machine's order
        r = stored_request(s, name, select, chunks="stored")
        assert r.headers["Content-Type"] == "application/octet-stream", (name, select)
        if ref is not None:
            assert r.content == ref.tobytes(), (name, select)
    r = stored_request(s, "bslz4", "[2:4,0:40,0:50]")
    assert r.headers["Content-Type"] == "application/octet-stream" and r.content == frames[2:4].tobytes()
    r = stored_request(s, "bslz4", "[2:4,0:40,0:50]", accept="application/json", chunks="stored")
    assert r.json()["value"] == frames[2:4].tolist()


@pytest.mark.parametrize("compressed", [True, False])
def test_stored_chunks_decode_to_the_values(chunked, tmp_path, compressed):
    """nx.remote decodes stored chunks itself (or, compressed = false, takes the values
    decoded): every read equals h5py's; a damaged chunk is an error naming the server,
    the file and the field, and which side found it."""
    s, root = chunked["server"], chunked["root"]
    out = ok(run_lua(connect(s, f", compressed = {str(compressed).lower()}") + f"""
        local f = r:load("/chunks.h5")
        local l = nx.load("{root / 'chunks.h5'}")
        for _, name in ipairs({{"bslz4", "lz4", "gzip", "be", "partial"}}) do
          for _, sel in ipairs({{"2", "2:4", "1:3", "0:4, 3:9", "-1"}}) do
            local a, b = f[name][sel], l[name][sel]
            print(name, sel, a.dtype == b.dtype and a:eq(b):all())
          end
          print(name, "sum", f[name]:sum(0):eq(l[name]:sum(0)):all(), f[name]:read():eq(l[name]:read()):all())
        end
        print("damaged", f.damaged[1]:eq(l.damaged[1]):all())
        local ok, err = pcall(function() return f.damaged[2] end)
        print("error", err)
    """, tmp_path))
    lines = out.splitlines()
    assert [l for l in lines[:-2] if not l.endswith("true")] == []
    assert len(lines) == 5 * 6 + 2
    err = lines[-1]
    assert f"{s.url}/chunks.h5: /damaged" in err, err
    if compressed:
        assert "chunk 0 (" in err and "bitshuffle+lz4 does not decode it" in err and "damaged file" in err, err
    else:
        assert "server" in err and "damaged" in err, err
