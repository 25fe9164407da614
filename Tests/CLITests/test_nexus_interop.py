"""Interop of the `nx` module with the Python peers users already have (h5py, nexusformat).

Two directions:
  - the peers write (peers/make_peer_files.py, run once per session with the venv's
    Python), nxlua reads: Lua snippets print what they read and the output is compared
    exactly;
  - nxlua writes, a check script run with the venv's Python opens the file with h5py and
    with nexusformat's nxload and checks tree, values, dtypes, strings, attributes, the
    @default chain, links and how booleans are stored. It prints "INTEROP OK", or
    "INTEROP MISMATCH" and the differences and exits 1.

The peers live in the venv made by scripts/venv (h5py and nexusformat from
scripts/requirements-peers.txt). The optional `hdf5plugin` package (LZ4, bitshuffle,
blosc) gates the tests that need it.
"""
import fcntl
import os
import pathlib
import shutil
import subprocess
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PEERS_SCRIPT = pathlib.Path(__file__).resolve().parent / "peers" / "make_peer_files.py"
UTF8_TEXT = "Ångström µm – ü"  # as in make_peer_files.py


def _venv_python():
    """The venv's Python with h5py and nexusformat; scripts/venv makes it when missing."""
    cache = pathlib.Path(os.environ.get("NXLUA_CACHE") or pathlib.Path(
        os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "nxlua")
    python = cache / "venv" / "bin" / "python"

    def usable():
        return python.exists() and subprocess.run(
            [str(python), "-c", "import h5py, nexusformat.nexus"], capture_output=True).returncode == 0

    if not usable():
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / "interop-venv.lock", "w") as lock:  # pytest-xdist workers
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not usable():
                r = subprocess.run([str(ROOT / "scripts" / "venv"),
                                    str(ROOT / "scripts" / "requirements-peers.txt")],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    raise RuntimeError(f"scripts/venv could not make the peers' venv:\n{r.stderr}")
                python = pathlib.Path(r.stdout.strip().splitlines()[-1]) / "bin" / "python"
    return str(python)


PYTHON = _venv_python()
HAVE_HDF5PLUGIN = subprocess.run([PYTHON, "-c", "import hdf5plugin"],
                                 capture_output=True).returncode == 0
needs_hdf5plugin = pytest.mark.skipif(not HAVE_HDF5PLUGIN,
                                      reason="the hdf5plugin package is not in the venv")


@pytest.fixture(scope="session")
def peers(tmp_path_factory):
    """The folder of the files written by h5py and nexusformat."""
    out = tmp_path_factory.mktemp("peers")
    r = subprocess.run([PYTHON, str(PEERS_SCRIPT), str(out)], capture_output=True, text=True,
                       timeout=120, cwd=str(out))
    assert r.returncode == 0, f"make_peer_files.py failed:\n{r.stdout}{r.stderr}"
    return out


# Lua helpers put before every snippet. J joins a 1-based list with commas (tostring on
# each item, so booleans and floats such as 2.0 show as Lua prints them); S joins
# strings with "|"; items turns an ndarray into a list and leaves a Lua table alone
# (the spec does not say which one an array attribute gives).
LUA_PRELUDE = """\
local function J(t) local o = {} for i, v in ipairs(t) do o[i] = tostring(v) end return table.concat(o, ",") end
local function S(t) return table.concat(t, "|") end
local function items(v) if type(v) == "table" then return v end return v:totable() end
"""


def lua(nxlua, code, cwd, **strings):
    """Runs a Lua snippet with the helpers and `local NAME = [==[value]==]` for each
    keyword argument; returns stdout and fails the test on an error."""
    head = "".join(f"local {k} = [==[{v}]==]\n" for k, v in strings.items())
    r = nxlua("-e", LUA_PRELUDE + head + textwrap.dedent(code), cwd=str(cwd))
    assert r.returncode == 0, f"nxlua failed:\n{r.stderr}"
    return r.stdout


# ---------------------------------------------------------------------------------------
# The peers write, nxlua reads.

@pytest.mark.parametrize("name, shown", [
    ("fixed_ascii", "fixed ascii"),
    ("fixed_padded", "abc"),            # S16, NUL-padded
    ("fixed_nullterm", "nullterm"),     # H5T_STR_NULLTERM, as the NeXus C API writes
    ("fixed_spacepad", "spaces"),       # H5T_STR_SPACEPAD, as Fortran writes; h5py strips
    ("fixed_utf8", UTF8_TEXT),
    ("vlen_ascii", "vlen ascii"),
    ("vlen_utf8", UTF8_TEXT),
    ("fixed_ascii_array", "[a|bb|ccc]"),
    ("fixed_utf8_array", "[α|βb|ccc]"),
    ("vlen_ascii_array", "[x|yy|zzz]"),
    ("vlen_utf8_array", f"[µ|{UTF8_TEXT}|]"),
])
def test_reads_strings(nxlua, peers, tmp_path, name, shown):
    out = lua(nxlua, """
        local f = nx.load(D .. "/types.h5")
        local c = f.strings[NAME]
        local v = c:read()
        if type(v) == "table" then
            print("[" .. S(v) .. "]", c.dtype, #c.shape, #v, S(c.nxvalue))
        else
            print(v, c.dtype, #c.shape, c.nxvalue == v)
        end
        f:close()
    """, tmp_path, D=peers, NAME=name)
    if shown.startswith("["):
        assert out == f"{shown}\tstring\t1\t{shown.count('|') + 1}\t{shown[1:-1]}\n"
    else:
        assert out == f"{shown}\tstring\t0\ttrue\n"


@pytest.mark.parametrize("path", ["/attributes", "/attributes/target"])
def test_reads_attributes_of_each_kind(nxlua, peers, tmp_path, path):
    out = lua(nxlua, """
        local f = nx.load(D .. "/types.h5")
        local a = f[P].attrs
        print(a.fixed_string, a.vlen_string)
        print(a.float, math.type(a.float), a.float32, a.int, math.type(a.int))
        print(J(items(a.int_array)), J(items(a.float_array)))
        print(a.bool, a.bool_false, type(a.bool), type(a.bool_false))
        print(S(items(a.string_array)))
        local names = {}
        for name in pairs(a) do names[#names + 1] = name end
        table.sort(names)
        print(J(names))
        f:close()
    """, tmp_path, D=peers, P=path)
    names = ["bool", "bool_false", "fixed_string", "float", "float32", "float_array", "int",
             "int_array", "string_array", "vlen_string"]
    if path.endswith("target"):
        names = sorted(names + ["units"])
    assert out == (f"fixed\t{UTF8_TEXT}\n2.5\tfloat\t-0.75\t42\tinteger\n1,2,3\t0.5,1.5\n"
                   f"true\tfalse\tboolean\tboolean\none|two\n{','.join(names)}\n")


def test_units_shortcut_reads_the_attribute(nxlua, peers, tmp_path):
    out = lua(nxlua, """
        local f = nx.load(D .. "/types.h5")
        print(f.attributes.target.units, f.attributes.target.attrs.units)
        f:close()
    """, tmp_path, D=peers)
    assert out == "mm\tmm\n"


def test_reads_h5py_booleans(nxlua, peers, tmp_path):
    """h5py stores numpy bool as an enum of int8 {FALSE = 0, TRUE = 1}."""
    out = lua(nxlua, """
        local f = nx.load(D .. "/types.h5")
        local a = f.bools.flags:read()
        print(f.bools.flags.dtype, a.dtype, J(a:totable()), a:sum())
        print(f.bools.scalar.dtype, f.bools.scalar:read())
        f:close()
    """, tmp_path, D=peers)
    assert out == "bool\tbool\ttrue,false,true\t2\nbool\ttrue\n"


@pytest.mark.parametrize("name, dtype, shown", [
    ("int8", "int8", "-128,0,127"),
    ("int16", "int16", "-32768,0,32767"),
    ("int32", "int32", "-2147483648,0,2147483647"),
    ("int64", "int64", "-9223372036854775808,0,9223372036854775807"),
    ("uint8", "uint8", "0,1,255"),
    ("uint16", "uint16", "0,1,65535"),
    ("uint32", "uint32", "0,1,4294967295"),
    ("uint64", "uint64", "0,1,9223372036854775807"),
    ("float32", "float32", "0.5,-1.25,1024.0"),
    ("float64", "float64", "0.1,-2.5,1e+300"),
    ("int32_be", "int32", "1,-2,300000"),        # big-endian in the file
    ("float64_be", "float64", "1.5,-2.25,1e-300"),
    ("uint16_be", "uint16", "1,2,65535"),
])
def test_reads_numeric_dtypes(nxlua, peers, tmp_path, name, dtype, shown):
    out = lua(nxlua, """
        local f = nx.load(D .. "/types.h5")
        local c = f.numbers[NAME]
        local a = c:read()
        print(c.dtype, a.dtype, J(a:totable()), J(c.shape), c.ndim, c.size, #c)
        print(c[2] == a[2], J(c["1:"]:totable()))
        f:close()
    """, tmp_path, D=peers, NAME=name)
    assert out == f"{dtype}\t{dtype}\t{shown}\t3\t1\t3\t3\ntrue\t{shown.split(',', 1)[1]}\n"


def test_reads_slices_of_a_2d_field(nxlua, peers, tmp_path):
    out = lua(nxlua, """
        local f = nx.load(D .. "/types.h5")
        local c = f["/numbers/matrix"]
        print(c.dtype, J(c.shape), c.ndim, c.size, #c)
        print(J(c[1]:totable()), J(c["..., -1"]:totable()), c["0:2, 1:3"]:sum(), J(c[":, ::2"].shape))
        print(c:read():sum(), c.nxvalue:sum())
    """, tmp_path, D=peers)
    assert out == "int32\t3,4\t2\t12\t3\n4,5,6,7\t3,7,11\t14\t3,2\n66\t66\n"


def test_reads_scalar_and_empty_datasets(nxlua, peers, tmp_path):
    out = lua(nxlua, """
        local f = nx.load(D .. "/types.h5")
        local i = f.scalars.int
        print(i:read(), math.type(i:read()), i.nxvalue, i[""], i.dtype, i.ndim, #i.shape, i.size)
        print(f.scalars.float:read(), f.scalars.int64:read() == -9007199254740993)
        local e = f.empty
        print(e.dtype, J(e.shape), e.ndim, e.size, #e, e:read().size, J(e:read().shape))
        f:close()
    """, tmp_path, D=peers)
    assert out == "42\tinteger\t42\t42\tint32\t0\t0\t1\n3.25\ttrue\nfloat64\t0\t1\t0\t0\t0\t0\n"


def test_reads_compound_dataset(nxlua, peers, tmp_path):
    out = lua(nxlua, """
        local f = nx.load(D .. "/types.h5")
        local c = f.compound
        print(c.dtype, J(c.shape))
        for i, row in ipairs(c:read()) do print(i, row.x, math.type(row.x), row.y) end
    """, tmp_path, D=peers)
    assert out == "compound\t3\n1\t1\tinteger\t0.5\n2\t2\tinteger\t1.5\n3\t3\tinteger\t-2.0\n"


def test_child_order_is_natural_as_in_nexusformat(nxlua, peers, tmp_path):
    """Children come in nexusformat's natural order, tracked creation order or not."""
    out = lua(nxlua, """
        local f = nx.load(D .. "/types.h5")
        for _, g in ipairs({f.order, f.tracked}) do
            local names = {}
            for name, obj in pairs(g) do names[#names + 1] = name .. "=" .. obj.nxname end
            print(J(g:keys()), J(names), #g)
        end
        f:close()
    """, tmp_path, D=peers)
    assert out == "a,b,c\ta=a,b=b,c=c\t3\na,b,c\ta=a,b=b,c=c\t3\n"


def test_follows_hard_soft_and_external_links(nxlua, peers, tmp_path):
    """The external link names its file relative to links.h5; nxlua runs elsewhere."""
    out = lua(nxlua, """
        local f = nx.load(D .. "/links.h5")
        print(J(f.entry.hard:read():totable()), f.entry.hard.nxclass, f.entry.hard.nxpath)
        print(J(f["/entry/soft"]:read():totable()), f.entry.soft.nxclass)
        print(J(f.entry.external:read():totable()), f.entry.external.dtype, f["entry/external"][1])
        print(J(f.entry:keys()))
        f:close()
    """, tmp_path, D=peers)
    assert out == ("0,1,2,3,4,5,6,7,8,9\tNXfield\t/entry/hard\n0,1,2,3,4,5,6,7,8,9\tNXfield\n"
                   "10,20,30\tint32\t20\ndata,external,hard,soft\n")


@pytest.mark.parametrize("name, rows", [
    ("vds.h5", "0,1,2,3\t10,11,12,13"),
    ("vds_missing.h5", "0,1,2,3\t-1,-1,-1,-1"),  # source deleted: the fill value, as HDF5 gives
])
def test_reads_virtual_dataset(nxlua, peers, tmp_path, name, rows):
    out = lua(nxlua, """
        local f = nx.load(D .. "/" .. NAME)
        local c = f.stack
        print(c.dtype, J(c.shape), J(c[0]:totable()), J(c[1]:totable()))
        print(J(c["..., 1"]:totable()))
    """, tmp_path, D=peers, NAME=name)
    second = rows.split("\t")[1].split(",")[1]
    assert out == f"int32\t2,4\t{rows}\n1,{second}\n"


@pytest.mark.parametrize("name, compression", [
    ("gzip", {"gzip"}),
    ("gzip_shuffle", {"gzip"}),
    ("lzf", {"lzf"}),
    pytest.param("lz4", {"lz4"}, marks=needs_hdf5plugin),
    # The spec names the writer's option "bshuf" but not what c.compression says.
    pytest.param("bshuf", {"bshuf", "bitshuffle+lz4"}, marks=needs_hdf5plugin),
    pytest.param("blosc", {"blosc"}, marks=needs_hdf5plugin),
])
def test_reads_compressed_datasets(nxlua, peers, tmp_path, name, compression):
    out = lua(nxlua, """
        local f = nx.load(D .. "/compressed.h5")
        local c = f[NAME]
        print(c.dtype, J(c.shape), J(c.chunks))
        print(c:read():sum(), c[9]:sum(), c["2:4, 10:12"]:sum())
        print(c.compression)
        f:close()
    """, tmp_path, D=peers, NAME=name)
    lines = out.splitlines()
    assert lines[:2] == ["int32\t10,100\t1,100", f"499500\t94950\t{210 + 211 + 310 + 311}"], out
    assert len(lines) == 3 and lines[2] in compression, out


def test_layout_of_each_storage_kind_matches_h5py(nxlua, peers, tmp_path):
    """c.layout names the storage as h5py's get_layout() does (a chunked field once said
    'contiguous': the property list was closed before HDF5 was asked)."""
    made = tmp_path / "layouts.h5"
    r = subprocess.run([PYTHON, "-c", textwrap.dedent(f"""
        import h5py, numpy as np
        with h5py.File({str(made)!r}, "w") as f:
            f.create_dataset("contiguous", data=np.arange(40, dtype="i4").reshape(4, 10))
            f.create_dataset("chunked", data=np.arange(40, dtype="i4").reshape(4, 10), chunks=(1, 10))
            f.create_dataset("gzip", data=np.arange(40, dtype="i4").reshape(4, 10), chunks=(2, 5), compression="gzip")
            sid = h5py.h5s.create_simple((4,))
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_layout(h5py.h5d.COMPACT)
            h5py.h5d.create(f.id, b"compact", h5py.h5t.NATIVE_INT32, sid, dcpl=dcpl)
        names = {{h5py.h5d.CONTIGUOUS: "contiguous", h5py.h5d.CHUNKED: "chunked",
                  h5py.h5d.COMPACT: "compact", h5py.h5d.VIRTUAL: "virtual"}}
        for path, name in [({str(made)!r}, "contiguous"), ({str(made)!r}, "chunked"), ({str(made)!r}, "gzip"),
                           ({str(made)!r}, "compact"), ({str(peers / "vds.h5")!r}, "stack")]:
            with h5py.File(path, "r") as f:
                print(name, names[f[name].id.get_create_plist().get_layout()])
    """)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    want = r.stdout
    out = lua(nxlua, """
        local f = nx.load(MADE)
        for _, name in ipairs({"contiguous", "chunked", "gzip", "compact"}) do print(name, f[name].layout) end
        print("stack", nx.load(D .. "/vds.h5").stack.layout)
        print(J(f.gzip.chunks), f.gzip.compression, f.contiguous.chunks)
    """, tmp_path, MADE=made, D=peers)
    assert out.replace("\t", " ").splitlines()[:5] == want.splitlines()
    assert want.split() == ["contiguous", "contiguous", "chunked", "chunked", "gzip", "chunked",
                            "compact", "compact", "stack", "virtual"]
    assert out.splitlines()[5] == "2,5\tgzip\tnil"


def test_reads_nexusformat_file(nxlua, peers, tmp_path):
    out = lua(nxlua, """
        local f = nx.load(D .. "/nexus.nxs")
        local d = f:default()
        print(f.nxclass, f.entry.nxclass, d.nxclass, d.nxpath, d.counts.nxclass)
        print(f.attrs.default, f.entry.attrs.default, d.attrs.signal, S(items(d.attrs.axes)))
        print(d.nxsignal.nxname, d.nxaxes[1].nxname, d.nxaxes[2].nxname, #d.nxaxes)
        print(d.nxsignal.attrs.units, d.x.units, d.x.attrs.long_name, d.y.units)
        print(d.counts.dtype, J(d.counts.shape), d.counts.size, d.counts:read():sum())
        print(d.counts.attrs.target, f["/entry/instrument/detector/counts"]:read():sum())
        print(f.entry.title:read(), d.title.nxvalue, f.entry.instrument.detector.distance:read(),
              f.entry.instrument.detector.distance.units)
        print(d.x[4], d.y[3], J(d.nxaxes[1].shape), J(d.nxaxes[2].shape))
        print(d.counts.parent.nxpath, d.counts.root.nxclass, f.entry.sample.temperature.parent.nxclass)
        f:close()
    """, tmp_path, D=peers)
    assert out == ("NXroot\tNXentry\tNXdata\t/entry/data\tNXfield\n"
                   "entry\tdata\tcounts\ty|x\n"
                   "counts\ty\tx\t2\n"
                   "counts\tmm\tX position\tK\n"
                   "int32\t20,100\t2000\t1999000\n"
                   "/entry/instrument/detector/counts\t1999000\n"
                   "peer scan\tcounts vs y, x\t1.5\tm\n"
                   "1.0\t1.5\t20\t100\n"
                   "/entry/data\tNXroot\tNXsample\n")


def test_finds_nexus_groups_by_class(nxlua, peers, tmp_path):
    out = lua(nxlua, """
        local f = nx.load(D .. "/nexus.nxs")
        local function names(list)
            local o = {}
            for i, g in ipairs(list) do o[i] = g.nxpath end
            table.sort(o)
            return table.concat(o, ",")
        end
        local e = f.entry
        print(names(e:component("NXdata")), names(e.NXinstrument), #e:component("NXdetector"))
        print(names(f:find("NXdetector")), names(f:find("NXmonitor")), names(f:find("NXsample")))
        print(J(f:keys()), J(e:keys()), #e)
        f:close()
    """, tmp_path, D=peers)
    assert out == ("/entry/data\t/entry/instrument\t0\n"
                   "/entry/instrument/detector\t/entry/monitor\t/entry/sample\n"
                   "entry\tdata,instrument,monitor,sample,title\t5\n")


def test_nxdata_float_slices_select_by_axis_value(nxlua, peers, tmp_path):
    """As nexusformat's data[1.5:2.5, :]: y = 0, 0.5, ... so rows 3 to 5, both ends in;
    x = 0, 0.25, ... so 1.0:2.0 is columns 4 to 8."""
    out = lua(nxlua, """
        local f = nx.load(D .. "/nexus.nxs")
        local d = f:default()
        local a = d["1.5:2.5, :"]
        print(J(a.shape), a:sum(), a.dtype)
        local b = d["1.5:2.5, 1.0:2.0"]
        print(J(b.shape), b:sum(), J(b[0]:totable()))
    """, tmp_path, D=peers)
    assert out == "3,100\t134850\tint32\n3,5\t6090\t304,305,306,307,308\n"


def test_tree_of_a_nexusformat_file(nxlua, peers, tmp_path):
    """The full tree loosely (the 2000-element detector field is summarised by dtype and
    shape); the short form exactly as nexusformat's short_tree."""
    out = lua(nxlua, """
        local f = nx.load(D .. "/nexus.nxs")
        print(tostring(f.entry))
        print("-- short")
        f.entry:tree("short")
        f:close()
    """, tmp_path, D=peers)
    full, short = out.split("-- short\n")
    for text in ("data", "detector", "counts", "@signal", "@axes", "@units", "int32(20x100)",
                 "1.5", "peer scan"):
        assert text in full, out
    theirs = subprocess.run([PYTHON, "-c", "import sys; from nexusformat.nexus import nxload; "
                             "print(nxload(sys.argv[1]).entry.short_tree)", str(peers / "nexus.nxs")],
                            capture_output=True, text=True, check=True).stdout
    assert short == theirs, out


def test_missing_object_error_names_file_and_path(nxlua, peers, tmp_path):
    out = lua(nxlua, """
        local f = nx.load(D .. "/nexus.nxs")
        print(pcall(function() return f["/entry/nope"] end))
    """, tmp_path, D=peers)
    assert out.startswith("false\t"), out
    for text in ("nexus.nxs", "/entry/nope", "no such object"):
        assert text in out, out


# ---------------------------------------------------------------------------------------
# nxlua writes, h5py and nexusformat read.

CHECK_PRELUDE = """\
import sys
import traceback

import h5py
import numpy as np
from nexusformat.nexus import NXlink, nxload

PATH = sys.argv[1]
PROBLEMS = []


def on_exception(kind, value, tb):
    # A peer that raises on the file is a mismatch too (exit status 1, as Python's own).
    print(f"INTEROP MISMATCH in {PATH}: a peer raised")
    print("\\n".join(PROBLEMS + [""]), end="")
    traceback.print_exception(kind, value, tb, file=sys.stdout)
    sys.exit(1)


sys.excepthook = on_exception


def problem(text):
    PROBLEMS.append(text)


def eq(got, want, what):
    if isinstance(got, np.ndarray) or isinstance(want, np.ndarray):
        same = np.shape(got) == np.shape(want) and bool(np.all(np.asarray(got) == np.asarray(want)))
    else:
        same = got == want
    if not same:
        problem(f"{what}: got {got!r}, want {want!r}")


def text(value):
    # A string attribute or value from h5py: str (variable length) or bytes (fixed).
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return text(value[()])
    return value


def texts(values):
    return [text(v) for v in values]


def is_h5py_bool(tid):
    # h5py's storage of numpy bool: an enum over int8 with FALSE = 0 and TRUE = 1.
    if not isinstance(tid, h5py.h5t.TypeEnumID):
        return False
    base = tid.get_super()
    members = {tid.get_member_name(i): tid.get_member_value(i) for i in range(tid.get_nmembers())}
    return (base.get_size() == 1 and base.get_sign() == h5py.h5t.SGN_2
            and members == {b"FALSE": 0, b"TRUE": 1})


def string_info(dset):
    # (encoding, variable length) of a string dataset, or None if not a string.
    info = h5py.check_string_dtype(dset.dtype)
    return None if info is None else (info.encoding, info.length is None)


def filters(dset):
    plist = dset.id.get_create_plist()
    return [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]


def done():
    if PROBLEMS:
        print("INTEROP MISMATCH in " + PATH)
        print("\\n".join(PROBLEMS))
        sys.exit(1)
    print("INTEROP OK")


"""


def check_with_peers(script, path, cwd, *args):
    """Runs a check script (CHECK_PRELUDE + script + done()) with the venv's Python, in
    `cwd` (not the file's folder, so links must resolve relative to the file), with
    sys.argv[1] = path and the further args after it."""
    code = CHECK_PRELUDE + textwrap.dedent(script) + "\ndone()\n"
    r = subprocess.run([PYTHON, "-c", code, str(path), *map(str, args)],
                       capture_output=True, text=True,
                       timeout=60, cwd=str(cwd))
    assert r.returncode == 0 and "INTEROP OK" in r.stdout, \
        f"the peers disagree with what nxlua wrote:\n{r.stdout}{r.stderr}"


def write_with_nxlua(nxlua, code, tmp_path, **strings):
    """Runs a writing snippet with P = tmp_path/out/out.nxs and D = its folder; returns P."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    lua(nxlua, code, tmp_path, P=out / "out.nxs", D=out, **strings)
    return out / "out.nxs"


WRITE_DTYPES = """
    local f = nx.load(P, "w")
    f.entry = nx.group("NXentry")
    local e = f.entry
    local values = {
        int8 = {-128, 0, 127}, int16 = {-32768, 0, 32767},
        int32 = {-2147483648, 0, 2147483647},
        int64 = {math.mininteger, 0, math.maxinteger},
        uint8 = {0, 1, 255}, uint16 = {0, 1, 65535}, uint32 = {0, 1, 4294967295},
        uint64 = {0, 1, math.maxinteger},
        float32 = {0.5, -1.25, 1024}, float64 = {0.1, -2.5, 1e300},
    }
    for dtype, list in pairs(values) do
        e[dtype] = array.from(list, dtype)
    end
    e.by_option = nx.field({1, 2, 3}, {dtype = "int16"})
    e.integer = 42
    e.big = 9007199254740993
    e.number = 2.5
    e.integers = {1, 2, 3}
    e.numbers = {0.5, 1, 2}
    e.matrix = array.arange(12):reshape({3, 4}):astype("int32")
    f:close()
"""

CHECK_DTYPES = """
    VALUES = {
        "int8": [-128, 0, 127], "int16": [-32768, 0, 32767],
        "int32": [-2147483648, 0, 2147483647],
        "int64": [-9223372036854775808, 0, 9223372036854775807],
        "uint8": [0, 1, 255], "uint16": [0, 1, 65535], "uint32": [0, 1, 4294967295],
        "uint64": [0, 1, 9223372036854775807],
        "float32": [0.5, -1.25, 1024.0], "float64": [0.1, -2.5, 1e300],
    }
    with h5py.File(PATH, "r") as f:
        e = f["entry"]
        eq(text(e.attrs.get("NX_class")), "NXentry", "/entry@NX_class")
        for name, values in VALUES.items():
            eq(e[name].dtype, np.dtype(name), f"/entry/{name} dtype")
            eq(e[name].shape, (3,), f"/entry/{name} shape")
            eq(e[name][()], np.array(values, dtype=name), f"/entry/{name} values")
        eq(e["by_option"].dtype, np.dtype("int16"), "/entry/by_option dtype")
        eq(e["by_option"][()], np.array([1, 2, 3]), "/entry/by_option values")
        for name, want, kind in (("integer", 42, "int64"), ("big", 9007199254740993, "int64"),
                                 ("number", 2.5, "float64")):
            eq(e[name].shape, (), f"/entry/{name} shape")
            eq(e[name].dtype, np.dtype(kind), f"/entry/{name} dtype")
            eq(e[name][()], want, f"/entry/{name} value")
        eq(e["integers"].dtype, np.dtype("int64"), "/entry/integers dtype")
        eq(e["integers"][()], np.array([1, 2, 3]), "/entry/integers values")
        eq(e["numbers"].dtype, np.dtype("float64"), "/entry/numbers dtype")
        eq(e["numbers"][()], np.array([0.5, 1.0, 2.0]), "/entry/numbers values")
        eq(e["matrix"].dtype, np.dtype("int32"), "/entry/matrix dtype")
        eq(e["matrix"][()], np.arange(12).reshape(3, 4), "/entry/matrix values")
        eq(sorted(e), sorted(list(VALUES) + ["by_option", "integer", "big", "number",
                                             "integers", "numbers", "matrix"]), "/entry children")
    root = nxload(PATH)
    eq(root.entry.nxclass, "NXentry", "nexusformat: entry class")
    eq(root.entry.int8.nxvalue, np.array([-128, 0, 127]), "nexusformat: int8")
    eq(root.entry.uint64.dtype, np.dtype("uint64"), "nexusformat: uint64 dtype")
    eq(root.entry.integer.nxvalue, 42, "nexusformat: integer")
    eq(root.entry.matrix.shape, (3, 4), "nexusformat: matrix shape")
"""


def test_written_numeric_fields_read_by_peers(nxlua, tmp_path):
    path = write_with_nxlua(nxlua, WRITE_DTYPES, tmp_path)
    check_with_peers(CHECK_DTYPES, path, tmp_path)


WRITE_STRINGS = """
    local f = nx.load(P, "w")
    f.entry = nx.group("NXentry")
    f.entry.title = "plain ascii"
    f.entry.utf8 = "Ångström µm – ü"
    f.entry.names = {"a", "bb", "ccc"}
    f.entry.utf8_names = {"α", "βb", ""}
    f.entry.with_units = nx.field("text", {units = "none"})
    f:close()
"""

CHECK_STRINGS = """
    UTF8 = "Ångström µm – ü"
    with h5py.File(PATH, "r") as f:
        e = f["entry"]
        for name, want in (("title", "plain ascii"), ("utf8", UTF8), ("with_units", "text")):
            eq(e[name].shape, (), f"/entry/{name} shape")
            info = string_info(e[name])
            if info is None:
                problem(f"/entry/{name}: not a string dataset ({e[name].dtype})")
                continue
            eq(e[name].asstr("utf-8")[()], want, f"/entry/{name} value")
        eq(string_info(e["utf8"])[0], "utf-8", "/entry/utf8 character set")
        for name, want in (("names", ["a", "bb", "ccc"]), ("utf8_names", ["α", "βb", ""])):
            if string_info(e[name]) is None:
                problem(f"/entry/{name}: not a string dataset ({e[name].dtype})")
                continue
            eq(e[name].shape, (3,), f"/entry/{name} shape")
            eq(list(e[name].asstr("utf-8")[()]), want, f"/entry/{name} values")
        eq(string_info(e["utf8_names"])[0], "utf-8", "/entry/utf8_names character set")
        eq(text(e["with_units"].attrs.get("units")), "none", "/entry/with_units@units")
    root = nxload(PATH)
    eq(root.entry.title.nxvalue, "plain ascii", "nexusformat: title")
    eq(root.entry.utf8.nxvalue, UTF8, "nexusformat: utf8")
    eq(texts(root.entry.utf8_names.nxvalue), ["α", "βb", ""], "nexusformat: utf8_names")
"""


def test_written_strings_read_by_peers(nxlua, tmp_path):
    path = write_with_nxlua(nxlua, WRITE_STRINGS, tmp_path)
    check_with_peers(CHECK_STRINGS, path, tmp_path)


WRITE_ATTRIBUTES = """
    local f = nx.load(P, "w")
    f.entry = nx.group("NXentry")
    f.entry.attrs.purpose = "attributes"
    f.entry.x = nx.field(array.arange(3), {units = "mm", attrs = {long_name = "position"}})
    local a = f.entry.x.attrs
    a.string = "text"
    a.utf8 = "Ångström"
    a.float = 2.5
    a.int = 42
    a.int_array = array.from({1, 2, 3}, "int32")
    a.float_array = array.from({0.5, 1.5})
    a.flag = true
    a.off = false
    f.entry.attrs.note = "on a group"
    f.attrs.creator = "nxlua"
    f:close()
"""

CHECK_ATTRIBUTES = """
    with h5py.File(PATH, "r") as f:
        eq(text(f.attrs.get("creator")), "nxlua", "/@creator")
        e = f["entry"]
        eq(text(e.attrs.get("NX_class")), "NXentry", "/entry@NX_class")
        eq(text(e.attrs.get("purpose")), "attributes", "/entry@purpose")
        eq(text(e.attrs.get("note")), "on a group", "/entry@note")
        x = e["x"]
        eq(x[()], np.arange(3), "/entry/x values")
        a = x.attrs
        for name, want in (("units", "mm"), ("long_name", "position"), ("string", "text"),
                           ("utf8", "Ångström")):
            eq(text(a.get(name)), want, f"/entry/x@{name}")
        eq(a.get("float"), 2.5, "/entry/x@float")
        eq(a.get_id("float").dtype, np.dtype("float64"), "/entry/x@float dtype")
        eq(a.get("int"), 42, "/entry/x@int")
        eq(a.get_id("int").dtype.kind, "i", "/entry/x@int dtype kind")
        eq(a.get("int_array"), np.array([1, 2, 3]), "/entry/x@int_array")
        eq(a.get_id("int_array").dtype, np.dtype("int32"), "/entry/x@int_array dtype")
        eq(a.get("float_array"), np.array([0.5, 1.5]), "/entry/x@float_array")
        for name, want in (("flag", True), ("off", False)):
            eq(a.get_id(name).dtype, np.dtype(bool), f"/entry/x@{name} dtype")
            eq(is_h5py_bool(a.get_id(name).get_type()), True, f"/entry/x@{name} stored as h5py's bool enum")
            eq(bool(a.get(name)), want, f"/entry/x@{name}")
        utf8 = a.get_id("utf8").get_type()
        eq(utf8.get_cset() if isinstance(utf8, h5py.h5t.TypeStringID) else None,
           h5py.h5t.CSET_UTF8, "/entry/x@utf8 character set")
    root = nxload(PATH)
    eq(root.entry.x.attrs["units"], "mm", "nexusformat: x@units")
    eq(root.entry.x.attrs["long_name"], "position", "nexusformat: x@long_name")
    eq(bool(root.entry.x.attrs["flag"]), True, "nexusformat: x@flag")
    eq(root.entry.attrs["note"], "on a group", "nexusformat: entry@note")
"""


def test_written_attributes_read_by_peers(nxlua, tmp_path):
    path = write_with_nxlua(nxlua, WRITE_ATTRIBUTES, tmp_path)
    check_with_peers(CHECK_ATTRIBUTES, path, tmp_path)


WRITE_GROUP_ATTRIBUTES = """
    local f = nx.load(P, "w")
    f.entry = nx.group("NXentry", {title = "a child field"}, {purpose = "given at creation", version = 2})
    f:close()
"""

CHECK_GROUP_ATTRIBUTES = """
    with h5py.File(PATH, "r") as f:
        e = f["entry"]
        eq(text(e.attrs.get("NX_class")), "NXentry", "/entry@NX_class")
        eq(text(e.attrs.get("purpose")), "given at creation", "/entry@purpose")
        eq(e.attrs.get("version"), 2, "/entry@version")
        eq(list(e), ["title"], "/entry children (the second table holds fields, the third attributes)")
    eq(nxload(PATH).entry.attrs["purpose"], "given at creation", "nexusformat: entry@purpose")
"""


def test_group_attributes_given_at_creation_read_by_peers(nxlua, tmp_path):
    """nx.group(class, {children}, {attrs}): fields and attributes given at creation."""
    path = write_with_nxlua(nxlua, WRITE_GROUP_ATTRIBUTES, tmp_path)
    check_with_peers(CHECK_GROUP_ATTRIBUTES, path, tmp_path)


WRITE_BOOLS = """
    local f = nx.load(P, "w")
    f.entry = nx.group("NXentry")
    f.entry.flag = true
    f.entry.flags = array.from({true, false, true})
    f.entry.attrs.ok = true
    f:close()
"""

CHECK_BOOLS = """
    with h5py.File(PATH, "r") as f:
        for name, want in (("flag", np.bool_(True)), ("flags", np.array([True, False, True]))):
            d = f["entry"][name]
            eq(is_h5py_bool(d.id.get_type()), True, f"/entry/{name} stored as h5py's bool enum")
            eq(d.dtype, np.dtype(bool), f"/entry/{name} dtype")
            eq(d[()], want, f"/entry/{name} values")
        eq(f["entry/flag"].shape, (), "/entry/flag shape")
        eq(is_h5py_bool(f["entry"].attrs.get_id("ok").get_type()), True, "/entry@ok stored as bool enum")
        eq(f["entry"].attrs.get("ok"), np.bool_(True), "/entry@ok")
    root = nxload(PATH)
    eq(root.entry.flags.dtype, np.dtype(bool), "nexusformat: flags dtype")
    eq(root.entry.flags.nxvalue, np.array([True, False, True]), "nexusformat: flags")
    eq(bool(root.entry.flag.nxvalue), True, "nexusformat: flag")
"""


def test_written_booleans_are_stored_as_h5py_stores_them(nxlua, tmp_path):
    path = write_with_nxlua(nxlua, WRITE_BOOLS, tmp_path)
    check_with_peers(CHECK_BOOLS, path, tmp_path)


WRITE_NXDATA = """
    local f = nx.load(P, "w")
    f.entry = nx.group("NXentry")
    local y = array.from({0.5, 1.0, 1.5})
    local x = array.from({10, 20, 30, 40}, "int32")
    f.entry.data = nx.data{signal = array.arange(12):reshape({3, 4}):astype("float32"),
                           axes = {y, x}, errors = array.ones({3, 4}), title = "made by nxlua"}
    f:close()
"""

CHECK_NXDATA = """
    with h5py.File(PATH, "r") as f:
        eq(text(f.attrs.get("default")), "entry", "/@default")
        eq(text(f["entry"].attrs.get("default")), "data", "/entry@default")
        d = f["entry/data"]
        eq(text(d.attrs.get("NX_class")), "NXdata", "/entry/data@NX_class")
        signal = text(d.attrs.get("signal"))
        if signal not in d:
            problem(f"/entry/data@signal = {signal!r} names no field of {list(d)}")
        else:
            eq(d[signal].dtype, np.dtype("float32"), "signal dtype")
            eq(d[signal][()], np.arange(12).reshape(3, 4), "signal values")
        axes = d.attrs.get("axes")
        axes = [text(axes)] if isinstance(axes, (str, bytes)) else texts(axes)
        eq(len(axes), 2, f"/entry/data@axes = {axes!r}: length")
        for i, (name, want) in enumerate(zip(axes, (np.array([0.5, 1.0, 1.5]),
                                                    np.array([10, 20, 30, 40])))):
            if name not in d:
                problem(f"axis {name!r} is no field of {list(d)}")
                continue
            eq(d[name][()], want, f"axis {name} values")
            eq(np.atleast_1d(d.attrs.get(f"{name}_indices")).tolist(), [i], f"@{name}_indices")
    root = nxload(PATH)
    data = root.get_default()
    eq(data.nxpath if data is not None else None, "/entry/data", "nexusformat: the default chain")
    eq(root.plottable_data.nxpath, "/entry/data", "nexusformat: plottable_data")
    data = root.entry.data
    eq(data.nxsignal.nxvalue, np.arange(12).reshape(3, 4), "nexusformat: nxsignal")
    eq([a.nxvalue.tolist() for a in data.nxaxes], [[0.5, 1.0, 1.5], [10, 20, 30, 40]],
       "nexusformat: nxaxes")
    errors = data.nxerrors
    eq(errors.nxvalue if errors is not None else None, np.ones((3, 4)), "nexusformat: nxerrors")
    eq(data.nxtitle, "made by nxlua", "nexusformat: nxtitle")
"""


def test_written_nxdata_and_default_chain_read_by_peers(nxlua, tmp_path):
    path = write_with_nxlua(nxlua, WRITE_NXDATA, tmp_path)
    check_with_peers(CHECK_NXDATA, path, tmp_path)


WRITE_NXDATA_BY_HAND = """
    local f = nx.load(P, "w")
    f.attrs.default = "entry"
    f.entry = nx.group("NXentry")
    f.entry.attrs.default = "data"
    f.entry.data = nx.group("NXdata")
    f.entry.data.attrs.signal = "counts"
    f.entry.data.attrs.axes = "x"
    f.entry.data.counts = nx.field(array.from({1, 4, 9, 16}, "int32"), {units = "counts"})
    f.entry.data.x = nx.field(array.from({0.0, 0.5, 1.0, 1.5}), {units = "mm"})
    f:close()
"""

CHECK_NXDATA_BY_HAND = """
    root = nxload(PATH)
    data = root.get_default()
    eq(data.nxpath if data is not None else None, "/entry/data", "nexusformat: the default chain")
    eq(data.nxsignal.nxname, "counts", "nexusformat: signal")
    eq(data.nxsignal.nxvalue, np.array([1, 4, 9, 16]), "nexusformat: signal values")
    eq(data.nxsignal.attrs["units"], "counts", "nexusformat: signal units")
    eq([a.nxname for a in data.nxaxes], ["x"], "nexusformat: axes")
    eq(data.nxaxes[0].attrs["units"], "mm", "nexusformat: axis units")
    eq(data[0.5:1.0].nxsignal.nxvalue, np.array([4, 9]), "nexusformat: float slice")
"""


def test_nxdata_made_by_hand_read_by_nexusformat(nxlua, tmp_path):
    path = write_with_nxlua(nxlua, WRITE_NXDATA_BY_HAND, tmp_path)
    check_with_peers(CHECK_NXDATA_BY_HAND, path, tmp_path)


WRITE_LINKS = """
    local x = nx.load(D .. "/ext.nxs", "w")
    x.data = nx.group("NXcollection")
    x.data.values = array.from({10, 20, 30}, "int32")
    x:close()
    local f = nx.load(P, "w")
    f.entry = nx.group("NXentry")
    f.entry.instrument = nx.group("NXinstrument")
    f.entry.instrument.detector = nx.group("NXdetector")
    f.entry.instrument.detector.counts = array.from({1, 2, 3}, "int32")
    f.entry.data = nx.group("NXdata")
    f.entry.data.attrs.signal = "counts"
    f.entry.data.counts = nx.link(f.entry.instrument.detector.counts)
    f.entry.soft = nx.link("/entry/instrument/detector/counts")
    f.entry.ext = nx.link("/data/values", "ext.nxs")
    f:close()
"""

CHECK_LINKS = """
    TARGET = "/entry/instrument/detector/counts"
    with h5py.File(PATH, "r") as f:
        for path in (TARGET, "/entry/data/counts"):
            link = f.get(path, getlink=True)
            eq(type(link).__name__, "HardLink", f"{path}: link type")
        eq(f["/entry/data/counts"].id == f[TARGET].id, True, "hard link: one object")
        eq(text(f["/entry/data/counts"].attrs.get("target")), TARGET, "hard link @target")
        soft = f.get("/entry/soft", getlink=True)
        eq(type(soft).__name__, "SoftLink", "/entry/soft: link type")
        eq(getattr(soft, "path", None), TARGET, "/entry/soft: path")
        eq(f["/entry/soft"][()], np.array([1, 2, 3]), "/entry/soft values")
        ext = f.get("/entry/ext", getlink=True)
        eq(type(ext).__name__, "ExternalLink", "/entry/ext: link type")
        eq(getattr(ext, "filename", None), "ext.nxs", "/entry/ext: file name (relative)")
        eq(getattr(ext, "path", None), "/data/values", "/entry/ext: path")
        eq(f["/entry/ext"][()], np.array([10, 20, 30]), "/entry/ext values")
    root = nxload(PATH)
    counts = root["entry/data/counts"]
    eq(isinstance(counts, NXlink), True, "nexusformat: /entry/data/counts is an NXlink")
    eq(getattr(counts, "nxtarget", None), TARGET, "nexusformat: hard link target")
    eq(root.entry.data.nxsignal.nxvalue, np.array([1, 2, 3]), "nexusformat: signal through link")
    eq(isinstance(root["entry/soft"], NXlink), True, "nexusformat: soft link is an NXlink")
    eq(root["entry/soft"].nxvalue, np.array([1, 2, 3]), "nexusformat: soft link value")
    eq(isinstance(root["entry/ext"], NXlink), True, "nexusformat: external link is an NXlink")
    eq(root["entry/ext"].nxvalue, np.array([10, 20, 30]), "nexusformat: external link value")
"""


def test_written_links_read_by_peers(nxlua, tmp_path):
    path = write_with_nxlua(nxlua, WRITE_LINKS, tmp_path)
    check_with_peers(CHECK_LINKS, path, tmp_path)


WRITE_STORAGE = """
    local f = nx.load(P, "w")
    f.entry = nx.group("NXentry")
    local e = f.entry
    local data = array.arange(1000):reshape({10, 100}):astype("int32")
    e.gzip = nx.field(data, {chunks = {1, 100}, compression = "gzip"})
    e.gzip4 = nx.field(data, {chunks = {1, 100}, compression = "gzip:4"})
    e.frames = nx.field(array.zeros({1, 4}, "float32"), {maxshape = {-1, 4}, chunks = {1, 4}, fillvalue = -1})
    e.frames:append(array.from({1, 2, 3, 4}, "float32"))
    e.frames:append(array.full(4, 7, "float32"))
    e.patch = array.zeros(6, "int64")
    e.patch["2:4"] = array.from({5, 6})
    f:close()
"""

CHECK_STORAGE = """
    DATA = np.arange(1000).reshape(10, 100)
    with h5py.File(PATH, "r") as f:
        e = f["entry"]
        for name, compression, level in (("gzip", "gzip", None), ("gzip4", "gzip", 4)):
            d = e[name]
            eq(d.compression, compression, f"/entry/{name} compression")
            if level is not None:
                eq(d.compression_opts, level, f"/entry/{name} level")
            eq(d.chunks, (1, 100), f"/entry/{name} chunks")
            eq(d.dtype, np.dtype("int32"), f"/entry/{name} dtype")
            eq(d[()], DATA, f"/entry/{name} values")
        d = e["frames"]
        eq(d.shape, (3, 4), "/entry/frames shape")
        eq(d.maxshape, (None, 4), "/entry/frames maxshape")
        eq(d.chunks, (1, 4), "/entry/frames chunks")
        eq(d.fillvalue, -1, "/entry/frames fillvalue")
        eq(d.dtype, np.dtype("float32"), "/entry/frames dtype")
        eq(d[()], np.array([[0, 0, 0, 0], [1, 2, 3, 4], [7, 7, 7, 7]]), "/entry/frames values")
        eq(e["patch"][()], np.array([0, 0, 5, 6, 0, 0]), "/entry/patch values")
    root = nxload(PATH)
    eq(root.entry.gzip4.nxvalue, DATA, "nexusformat: gzip4")
    eq(root.entry.frames.shape, (3, 4), "nexusformat: frames shape")
"""


def test_written_chunked_compressed_and_appended_fields_read_by_peers(nxlua, tmp_path):
    path = write_with_nxlua(nxlua, WRITE_STORAGE, tmp_path)
    check_with_peers(CHECK_STORAGE, path, tmp_path)


# Rows 0-4 compress, rows 5-9 (scrambled numbers) do not: LZF must then keep those
# chunks unfiltered, as h5py does (its filter is optional), instead of dropping them.
WRITE_LZF = """
    local f = nx.load(P, "w")
    f.entry = nx.group("NXentry")
    local rows = {}
    for r = 0, 9 do
        local row = {}
        for c = 0, 99 do
            local i = r * 100 + c
            row[c + 1] = r < 5 and 0 or (i * 7919) ~ (i << 13)
        end
        rows[r + 1] = row
    end
    f.entry.lzf = nx.field(array.from(rows, "int32"), {chunks = {1, 100}, compression = "lzf"})
    f:close()
"""

CHECK_LZF = """
    i = np.arange(1000)
    want = np.where(i < 500, 0, (i * 7919) ^ (i << 13)).reshape(10, 100)
    with h5py.File(PATH, "r") as f:
        d = f["entry/lzf"]
        eq(d.compression, "lzf", "/entry/lzf compression")
        eq(d.chunks, (1, 100), "/entry/lzf chunks")
        eq(d.dtype, np.dtype("int32"), "/entry/lzf dtype")
        eq(d.id.get_num_chunks(), 10, "/entry/lzf chunks stored")
        eq(d[()], want, "/entry/lzf values")
    eq(nxload(PATH).entry.lzf.nxvalue, want, "nexusformat: lzf values")
"""


def test_written_lzf_read_by_peers(nxlua, tmp_path):
    path = write_with_nxlua(nxlua, WRITE_LZF, tmp_path)
    check_with_peers(CHECK_LZF, path, tmp_path)


WRITE_PLUGIN = """
    local f = nx.load(P, "w")
    f.entry = nx.group("NXentry")
    f.entry.data = nx.field(array.arange(1000):reshape({10, 100}):astype("int32"),
                            {chunks = {1, 100}, compression = NAME})
    f:close()
"""

CHECK_PLUGIN = """
    import hdf5plugin  # the filters for h5py
    FILTER = int(sys.argv[2])
    with h5py.File(PATH, "r") as f:
        d = f["entry/data"]
        eq(FILTER in filters(d), True, f"/entry/data filters {filters(d)} hold {FILTER}")
        eq(d.chunks, (1, 100), "/entry/data chunks")
        eq(d[()], np.arange(1000).reshape(10, 100), "/entry/data values")
    eq(nxload(PATH).entry.data.nxvalue.sum(), 499500, "nexusformat: sum")
"""


@needs_hdf5plugin
@pytest.mark.parametrize("name, filter_id", [("lz4", 32004), ("bshuf", 32008),
                                                  pytest.param("blosc", 32001, marks=pytest.mark.full_unwind)])
def test_written_plugin_compression_read_by_peers(nxlua, tmp_path, name, filter_id):
    path = write_with_nxlua(nxlua, WRITE_PLUGIN, tmp_path, NAME=name)
    check_with_peers(CHECK_PLUGIN, path, tmp_path, filter_id)


WRITE_COPY = """
    local src = nx.load(PEERS .. "/nexus.nxs")
    local out = nx.load(P, "w")
    out.entry = src.entry
    out:close()
    src:close()
"""

CHECK_COPY = """
    SOURCE = sys.argv[2]  # the peer's nexus.nxs


    def tree(group):
        # {link name: (link type, attributes, dtype, value)} over every link below group.
        found = {}
        def visit(name, link):
            obj = group[name]
            attrs = {k: texts(v) if isinstance(v, np.ndarray) and v.dtype.kind == "O" else text(v)
                     for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                value = obj.asstr()[()] if string_info(obj) else obj[()]
                value = value.tolist() if isinstance(value, np.ndarray) else value
                dtype = "string" if string_info(obj) else obj.dtype.str
            else:
                value = dtype = None
            found[name] = (type(link).__name__, attrs, dtype, value)
        group.visititems_links(visit)
        return found


    with h5py.File(SOURCE, "r") as src, h5py.File(PATH, "r") as out:
        want, got = tree(src["entry"]), tree(out["entry"])
        eq(sorted(got), sorted(want), "the copied tree")
        for name in sorted(set(want) & set(got)):
            eq(got[name], want[name], f"/entry/{name}")
        eq(out["entry/data/counts"].id == out["entry/instrument/detector/counts"].id, True,
           "the hard link inside the entry stays one object")
    root = nxload(PATH)
    eq(root.entry.get_default().nxpath, "/entry/data", "nexusformat: entry@default")
    eq(root.entry.data.nxsignal.nxvalue.sum(), 1999000, "nexusformat: signal sum")
    eq([a.nxname for a in root.entry.data.nxaxes], ["y", "x"], "nexusformat: axes")
"""


def test_copied_entry_matches_the_peer_original(nxlua, peers, tmp_path):
    path = write_with_nxlua(nxlua, WRITE_COPY, tmp_path, PEERS=peers)
    check_with_peers(CHECK_COPY, path, tmp_path, peers / "nexus.nxs")


WRITE_MODIFY = """
    local f = nx.load(P, "rw")
    f.entry.sample.chemical_formula = nil
    f.entry.monitor:rename("monitor1")
    f.entry.notes = "added by nxlua"
    f.entry.data.x.attrs.units = "um"
    f.entry.instrument.detector.distance.attrs.units = "mm"
    f:close()
"""

CHECK_MODIFY = """
    with h5py.File(PATH, "r") as f:
        e = f["entry"]
        eq("chemical_formula" in e["sample"], False, "/entry/sample/chemical_formula deleted")
        eq(sorted(e), ["data", "instrument", "monitor1", "notes", "sample", "title"], "/entry children")
        eq(text(e["monitor1"].attrs.get("NX_class")), "NXmonitor", "/entry/monitor1@NX_class")
        eq(e["monitor1/data"][()], np.ones(20), "/entry/monitor1/data values")
        eq(e["notes"].asstr()[()] if string_info(e["notes"]) else None, "added by nxlua", "/entry/notes")
        eq(text(e["data/x"].attrs.get("units")), "um", "/entry/data/x@units")
        eq(text(e["instrument/detector/distance"].attrs.get("units")), "mm", "distance@units")
        eq(e["data/counts"].id == e["instrument/detector/counts"].id, True, "the hard link survives")
    root = nxload(PATH)
    eq(root.plottable_data.nxsignal.nxvalue.sum(), 1999000, "nexusformat: plottable signal")
    eq(root.entry.monitor1.data.nxvalue.sum(), 20.0, "nexusformat: renamed monitor")
"""


def test_peer_file_modified_in_place_read_by_peers(nxlua, peers, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(peers / "nexus.nxs", out / "out.nxs")
    path = write_with_nxlua(nxlua, WRITE_MODIFY, tmp_path)
    check_with_peers(CHECK_MODIFY, path, tmp_path)


def test_small_arrays_print_as_nexusformat_prints_them(nxlua, tmp_path):
    """Short arrays in the tree: NumPy's str with nexusformat's precision 6, i.e. one width
    per array, floats aligned on the point, scientific when NumPy would use it."""
    script = textwrap.dedent("""
        import sys
        import h5py, numpy as np
        from nexusformat.nexus import nxload
        cases = [[1.5, 10.], [1, 10, -3], [True, False], [0.1, 1/3, 2], [-1.25, 3.], [1e-5, 1.],
                 [np.nan, 1.5, np.inf], [1e9, 1.], [1.5e9, 1.], [1e-5, 2.5e-3, 1], [0.001, 2.],
                 [-1e9, np.nan], [1.23456789e10, 3.], [0., 1e-5], [0., 0.], [-0., 1.],
                 [123456.789, 0.5], [np.nan, np.nan], [1., np.inf], [1e-300, 1.], [1e100, 1.],
                 [2**60 + 1, 3], [0.5, 12345.678901234], [-7.5, 99.125, 3]]
        with h5py.File(sys.argv[1], "w") as f:
            for i, c in enumerate(cases):
                f[f"c{i:02d}"] = np.array(c)
            f["f32"] = np.float32([0.1, 0.2, 3])
            f["i8"] = np.int8([-1, 100])
            f["u64"] = np.uint64([2**64 - 1, 1])
        print(nxload(sys.argv[1]).tree)
    """)
    path = tmp_path / "small.h5"
    theirs = subprocess.run([PYTHON, "-c", script, str(path)], capture_output=True, text=True, check=True).stdout
    r = nxlua("-e", f"print(nx.load({str(path)!r}))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == theirs.splitlines()


def test_huge_flat_group_lists_and_reads(nxlua, tmp_path):
    """A group of more children than listing keeps open (4096): its ids are closed after
    listing and each child reopens by path when used."""
    path = tmp_path / "flat.h5"
    subprocess.run([PYTHON, "-c", "import sys, h5py\nwith h5py.File(sys.argv[1], 'w') as f:\n"
                    "    g = f.create_group('g')\n    for i in range(5000): g[f'd_{i}'] = i\n", str(path)],
                   check=True)
    r = nxlua("-e", f"local g = nx.load({str(path)!r}).g; print(#g, g.d_4999, g['d_17']:read(), "
                    "select(2, tostring(g):gsub('\\n', '')))")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "5000\t4999\t17\t5000\n"
