"""NeXus files from Lua: writing, navigation, lazy 0-based slices, NXdata, links, errors,
SWMR and the nexusformat lock. Peers (h5py, nexusformat) are in test_nexus_interop.py."""
import os
import subprocess
import textwrap
import time

import pytest


def run(nxlua, code, cwd=None, ok=True):
    r = nxlua("-e", textwrap.dedent(code), cwd=cwd)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


WRITE = """
    local f <close> = nx.load("scan.nxs", "w")
    f.entry = nx.group("NXentry", {title = "run 1"})
    local counts = array.arange(3 * 4 * 5):reshape({3, 4, 5}):astype("int32")
    f.entry.data = nx.data{signal = nx.field(counts, {name = "counts", units = "counts"}),
                           axes = {nx.field(array.linspace(1, 3, 3), {name = "t"}), array.arange(4), array.arange(5)}}
    f.entry.names = {"a", "bb"}
    f.entry.flag = true
    f.entry.big = array.arange(2000)
    f.entry.alias = nx.link(f.entry.data.counts)
    f.entry.soft = nx.link("/entry/data/t")
"""


@pytest.fixture
def scan(nxlua, tmp_path):
    run(nxlua, WRITE, cwd=tmp_path)
    return tmp_path


def test_tree_print_like_nexusformat(nxlua, scan):
    out = run(nxlua, 'print(nx.load("scan.nxs"))', cwd=scan).stdout
    assert out == textwrap.dedent("""\
        root:NXroot
          @default = 'entry'
          entry:NXentry
            @default = 'data'
            alias -> /entry/data/counts
            big = int64(2000)
            data:NXdata
              @axes = ['t', 'axis1', 'axis2']
              @axis1_indices = 1
              @axis2_indices = 2
              @signal = 'counts'
              @t_indices = 0
              axis1 = int64(4)
              axis2 = int64(5)
              counts = int32(3x4x5)
                @target = '/entry/data/counts'
                @units = 'counts'
              t = [1. 2. 3.]
            flag = True
            names = ['a' 'bb']
            soft -> /entry/data/t
            title = 'run 1'
        """)
    short = run(nxlua, 'nx.load("scan.nxs").entry.data:tree("short")', cwd=scan).stdout
    assert short == textwrap.dedent("""\
        data:NXdata
          @axes = ['t', 'axis1', 'axis2']
          @axis1_indices = 1
          @axis2_indices = 2
          @signal = 'counts'
          @t_indices = 0
          axis1 = int64(4)
          axis2 = int64(5)
          counts = int32(3x4x5)
          t = [1. 2. 3.]
        """)
    r = nxlua("-e", 'nx.load("scan.nxs"):tree("long")', cwd=scan)
    assert r.returncode == 1 and "bad argument #1 to 'tree'" in r.stderr and '"short" or nothing expected' in r.stderr


def test_navigation_and_zero_based_slices(nxlua, scan):
    out = run(nxlua, """
        local f = nx.load("scan.nxs")
        local c = f.entry.data.counts
        print(c.shape[1], c.shape[3], c.dtype, c.ndim, c.size, #c, c.units, c.attrs.units)
        print(c[0]:sum(), c[2]["3, 4"], c["-1, -1, -1"], c["1, ::2, 1:3"]:sum(), c["..., 0"].shape[2])
        print(f["/entry/data/counts"].nxpath, f.entry["data/t"].nxname, f.entry.data["../title"].nxvalue)
        print(f.entry.data.nxsignal.nxname, f.entry.data.nxaxes[1].nxname, f:default().nxpath, f.entry.data.parent.nxclass)
        print(f.entry.NXdata[1].nxname, #f.entry:find("NXdata"), f.entry.names[1], f.entry.flag:read(), f.entry.soft:read():sum())
        print(f.entry.data["1.5:2.5, 0, 0"], f.entry.data[2.6]:sum())
        local keys = {}
        for k in pairs(f.entry) do keys[#keys + 1] = k end
        print(table.concat(keys, " "), f.mode, f.entry.data.counts.nxclass)
    """, cwd=scan).stdout.splitlines()
    assert out[0] == "3\t5\tint32\t3\t60\t3\tcounts\tcounts"
    # frame 0 = 0..19; [2][3][4] = 59; [1, ::2, 1:3] = rows 0, 2 of frame 1, columns 1, 2
    assert out[1] == f"190\t59\t59\t{21 + 22 + 31 + 32}\t4"
    assert out[2] == "/entry/data/counts\tt\trun 1"
    assert out[3] == "counts\tt\t/entry/data\tNXentry"
    assert out[4] == "data\t1\tbb\ttrue\t6.0"
    # t = 1, 2, 3: 1.5:2.5 is the single bin t=2 (dropped axis) -> counts[1, 0, 0] = 20
    assert out[5] == f"20\t{sum(range(40, 60))}"
    assert out[6] == "alias big data flag names soft title\tr\tNXfield"


def test_writing_in_place_append_rename_delete_copy(nxlua, scan):
    out = run(nxlua, """
        local f <close> = nx.load("scan.nxs", "rw")
        local c = f.entry.data.counts
        c["0, :, :"] = 7
        c[1] = array.full({4, 5}, 1, "int32")
        print(c[0]:sum(), c[1]:sum())
        f.entry.stack = nx.field(nil, {shape = {0, 2}, dtype = "int32", maxshape = {-1, 2}, compression = "gzip:1"})
        f.entry.stack:append(array.from({1, 2}))
        f.entry.stack:append(array.from({{3, 4}, {5, 6}}))
        print(f.entry.stack.shape[1], f.entry.stack:read():sum(), f.entry.stack.compression, f.entry.stack.maxshape[1])
        local r = f.entry.names:rename("labels")
        print(r.nxpath, f.entry.labels[1], f.entry.names)
        f.entry.flag = nil
        print(f.entry.flag)
        local out <close> = nx.load("copy.nxs", "w")
        out.entry = f.entry
        print(out.entry.data.counts[0]:sum(), out.entry.title.nxvalue)
        f.entry.title = "renamed run"
        f.entry.data.counts.attrs.long_name = "Counts"
        f.entry.data.counts.attrs.units = nil
        print(f.entry.title.nxvalue, f.entry.data.counts.attrs.long_name, f.entry.data.counts.units)
    """, cwd=scan).stdout.splitlines()
    assert out == ["140\t20", "3\t21\tgzip\t-1", "/entry/labels\tbb\tnil", "nil", "140\trun 1",
                   "renamed run\tCounts\tnil"]


@pytest.mark.parametrize("compression", ["gzip", "gzip:9", "lz4", "bshuf", pytest.param("blosc", marks=pytest.mark.full_unwind), "lzf"])
def test_compression_filters_round_trip(nxlua, tmp_path, compression):
    out = run(nxlua, f"""
        local f <close> = nx.load("c.nxs", "w")
        f.x = nx.field(array.arange(10000):reshape({{100, 100}}):astype("int32"), {{compression = "{compression}", chunks = {{10, 100}}}})
        print(f.x.compression, f.x:read():sum(), f.x["5:7, 3"]:sum(), f.x.chunks[1])
    """, cwd=tmp_path).stdout
    name = {"gzip:9": "gzip", "bshuf": "bitshuffle+lz4"}.get(compression, compression)
    assert out == f"{name}\t49995000\t{503 + 603}\t10\n"


ERRORS = [
    ('nx.load("missing.nxs")', "missing.nxs: no such file"),
    ('nx.load("notnexus.txt")', "notnexus.txt: not an HDF5/NeXus file"),
    ('nx.load("truncated.nxs")', "truncated.nxs: cannot open the file"),
    ('nx.load("scan.nxs", "x")', "bad argument #2 to 'load' (invalid mode 'x'"),
    ('nx.load("scan.nxs", "w-")', "scan.nxs: file exists"),
    ('local _ = nx.load("scan.nxs")["/entry/nope"]', "scan.nxs: /entry/nope: no such object"),
    ('local _ = nx.load("scan.nxs").entry.data.counts[3]', "scan.nxs: /entry/data/counts: index 3 is out of bounds for axis 0 with size 3"),
    ('local _ = nx.load("scan.nxs").entry.data.counts["0, 0, 0, 0"]', "scan.nxs: /entry/data/counts: too many indices"),
    ('local _ = nx.load("scan.nxs").entry.data.counts["0:a"]', "bad index 'a'"),
    ('nx.load("scan.nxs").entry.x = 1', "scan.nxs: /entry: the file is open read-only"),
    ('local f = nx.load("scan.nxs", "rw"); f.entry.data.counts[0] = array.zeros({3, 3})',
     "scan.nxs: /entry/data/counts: cannot broadcast shape (3, 3) to (4, 5)"),
    ('local f = nx.load("scan.nxs", "rw"); f.entry.data = nx.group("NXdata")', "scan.nxs: /entry: 'data' exists already"),
    ('local f = nx.load("scan.nxs", "rw"); f.entry.x = nx.field(1, {compression = "zip"})', "unknown compression 'zip'"),
    ('local f = nx.load("scan.nxs"); local c = f.entry.data.counts; f:close(); print(c[0])',
     "scan.nxs: /entry/data/counts: the file is closed"),
    ('local f = nx.load("scan.nxs"); f:close(); print(f.entry)', "attempt to use a closed NXgroup"),
]


@pytest.mark.parametrize("code,message", ERRORS)
def test_bad_input_is_a_clear_error(nxlua, scan, code, message):
    (scan / "notnexus.txt").write_text("hello\n")
    data = (scan / "scan.nxs").read_bytes()
    (scan / "truncated.nxs").write_bytes(data[: len(data) // 2])
    r = run(nxlua, code, cwd=scan, ok=False)
    assert r.returncode == 1
    assert message in r.stderr, r.stderr
    assert "stack traceback" in r.stderr  # a Lua error, not a crash


def test_pcall_catches_errors_and_file_stays_usable(nxlua, scan):
    out = run(nxlua, """
        local f = nx.load("scan.nxs")
        for i = 1, 2000 do assert(not pcall(function() return f.entry.data.counts[99] end)) end
        print(f.entry.data.counts[2]:sum())
    """, cwd=scan).stdout
    assert out == f"{sum(range(40, 60))}\n"


def test_swmr_reader_sees_growing_dataset(nxlua, tmp_path):
    code_writer = textwrap.dedent("""
        local f <close> = nx.load("live.nxs", "w", {swmr = true})
        f.entry = nx.group("NXentry")
        f.entry.frames = nx.field(nil, {shape = {0, 4}, dtype = "int32", maxshape = {-1, 4}})
        f:swmr()
        for i = 1, 6 do
            f.entry.frames:append(array.full({4}, i, "int32"))
            f.entry.frames:flush()
            io.write("wrote ", i, "\\n"); io.flush()
            nxlua.sleep(0.3)
        end
    """)
    from conftest import BIN
    env = dict(os.environ)
    w = subprocess.Popen([BIN, "-e", code_writer], cwd=tmp_path, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert w.stdout.readline() == "wrote 1\n"
        r = run(nxlua, """
            local f = nx.load("live.nxs", "r", {swmr = true})
            local c = f.entry.frames
            local first = c.shape[1]
            local last = first
            for i = 1, 40 do
                nxlua.sleep(0.1)
                c:refresh()
                last = c.shape[1]
                if last == 6 then break end
            end
            print(first >= 1, last, c[last - 1][0])
        """, cwd=tmp_path).stdout
        assert r == "true\t6\t6\n"
    finally:
        w.wait(timeout=30)
    assert w.returncode == 0


def test_nexusformat_lock_file(nxlua, tmp_path):
    r = run(nxlua, """
        nx.config{lock = 0.3}
        local f = nx.load("l.nxs", "w")
        local fh = io.open("l.nxs.lock")
        print(fh ~= nil, fh and fh:read("a"):match("^%d+@") ~= nil)
        local ok, err = pcall(nx.load, "l.nxs", "rw")
        print(ok, err)
        f:close()
        print(io.open("l.nxs.lock") == nil)
        -- a stale lock (older than the expiry) is removed
        io.open("l.nxs.lock", "w"):write("1@elsewhere"):close()
        nx.config{lockexpiry = 1}
        nxlua.sleep(2.1)
        local g = nx.load("l.nxs", "rw"); g:close()
        print("stale lock taken over")
    """, cwd=tmp_path).stdout.splitlines()
    assert r[0] == "true\ttrue"
    assert r[1].startswith("false\t") and "l.nxs: the file is locked by" in r[1]
    assert r[2:] == ["true", "stale lock taken over"]


def test_help_and_completion_know_nx(nxlua, scan):
    out = run(nxlua, """
        local complete = require("nxlua.complete")
        f = nx.load("scan.nxs")
        print(table.concat(select(2, complete.complete("f.entry.da")), " "))
        print(table.concat(select(2, complete.complete("f.entry.data.counts.u")), " "))
        help(nx.load)
    """, cwd=scan).stdout
    lines = out.splitlines()
    assert lines[0] == "f.entry.data"
    assert lines[1] == "f.entry.data.counts.units"
    assert "nx.load(path [, mode [, options]]) -> root" in out


def test_streaming_reductions_and_blocks(nxlua, tmp_path):
    """c:sum/min/max/mean/prod stream through the file and equal the in-memory results;
    c:blocks(n) visits every row once; nothing is drawn on stderr when it is a pipe."""
    r = nxlua("-e", textwrap.dedent("""
        local f = nx.load("s.nxs", "w")
        local a = (array.arange(9 * 4 * 5):reshape({9, 4, 5}) - 90):astype("int32")
        f.c = nx.field(a, {chunks = {2, 4, 5}, compression = "gzip:1"})
        local c = f.c
        local function same(x, y) return tostring(x) == tostring(y) end
        print(same(c:sum(), a:sum()), same(c:sum(0), a:sum(0)), same(c:sum({0, 2}, true), a:sum({0, 2}, true)))
        print(same(c:min(1), a:min(1)), same(c:max({1, 2}), a:max({1, 2})), same(c:mean(0), a:mean(0)))
        print(c:sum(0).dtype, c:mean(0).dtype, c:max(), c:min(), c:mean() == a:mean())
        local rows, total = {}, 0
        for first, block in c:blocks(4) do rows[#rows + 1] = first .. ":" .. block.shape[1]; total = total + block:sum() end
        print(table.concat(rows, " "), total == a:sum())
        print(pcall(c.sum, c, 3))
        f.t = "text"
        print(pcall(f.t.sum, f.t))
    """), cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "true\ttrue\ttrue"
    assert lines[1] == "true\ttrue\ttrue"
    assert lines[2] == "int64\tfloat64\t89\t-90\ttrue"
    assert lines[3] == "0:4 4:4 8:1\ttrue"
    assert lines[4].startswith("false\t") and "s.nxs: /c: axis 3 is out of bounds for array of dimension 3" in lines[4]
    assert lines[5].startswith("false\t") and "s.nxs: /t: a numeric field is needed here" in lines[5]
    assert "\x1b" not in r.stderr and r.stderr == ""


def limited(size_kib, *args, cwd):
    """Runs nxlua with files limited to size_kib KiB, as a full disk would stop them:
    writes past the limit fail with EFBIG (SIGXFSZ, which would kill, is ignored)."""
    from conftest import BIN
    return subprocess.run(["bash", "-c", f"trap '' XFSZ; ulimit -f {size_kib}; exec \"$@\"", "limited", BIN, *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def test_full_disk_writes_and_close_fail_with_the_reason(tmp_path):
    """A write past the end of the disk raises naming the file, the object and the
    system's reason; a close that cannot write what HDF5 held raises too (the file may
    lack the last changes); neither crashes, at once or at exit."""
    r = limited(200, "-e", 'local f = nx.load("big.nxs", "w"); f.data = array.zeros({1000, 1000})', cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "big.nxs: /: cannot create field 'data' (file write failed: File too large (errno 27))" in r.stderr
    # 200 fields (about 40 KiB of object headers) stay in HDF5's metadata cache until the
    # close, which then cannot write them past 16 KiB. Small on purpose: under ASan with
    # full unwinding every allocation costs ~0.15 ms, and 3000 fields took 70-98 s.
    code = 'local f = nx.load("many.nxs", "w"); for i = 1, 200 do f["g" .. i] = i end; print("written"); f:close()'
    r = limited(16, "-e", code, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert r.stdout.strip() == "written"
    assert "many.nxs: closing failed, the last changes may be missing (file write failed: File too large (errno 27))" in r.stderr
    # the file that could not be closed is left alone at exit (HDF5 crashed closing it again)
    r = limited(16, "-e", code.replace('; f:close()', ''), cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "written", r.stderr


def test_many_children_created_in_any_order_list_in_natural_order(nxlua, tmp_path):
    """A group's cached listing gains each new child in its natural place (no relisting
    per creation): the keys equal a fresh listing after reopening, through fields,
    groups, copies, links and deletions, and 3000 creations stay quick."""
    n = 600 if os.environ.get("NXLUA_SANITIZED") == "1" else 3000
    r = run(nxlua, """
        local f = nx.load("wide.nxs", "w")
        f.entry = nx.group("NXentry")
        local e = f.entry
        for i = COUNT, 1, -1 do e["v" .. i] = i end            -- backwards
        for _, name in ipairs({"b10", "b9", "B2", "a", "z1", "x"}) do e[name] = nx.group("NXcollection") end
        print(#e:keys())                                         -- listed once above, then kept up to date
        e.v17 = nil
        e.copy = e.b10
        e.link = nx.link(e.v5)
        e.m = "text"
        e.soft = nx.link("/entry/v3")
        e.dangling = nx.link("/entry/nothing")
        e.ext = nx.link("/entry", "elsewhere.nxs")
        local before = table.concat(e:keys(), " ")
        local kinds = tostring(e.soft.nxvalue) .. " " .. tostring(e.v5.nxvalue)
        local text = tostring(e)                                 -- links and classes as listed
        f:close()
        local g = nx.load("wide.nxs")
        local after = table.concat(g.entry:keys(), " ")
        assert(tostring(g.entry) == text, "the tree text differs from a fresh listing")
        print(before == after, #g.entry:keys(), g.entry["v" .. (COUNT - 1)], g.entry.copy.nxclass, kinds)
    """.replace("COUNT", str(n)), cwd=tmp_path)
    lines = r.stdout.split("\n")
    assert lines[0] == str(n + 6)
    assert lines[1] == f"true\t{n + 11}\t{n - 1}\tNXcollection\t3 5"
