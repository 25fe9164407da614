"""One binding for every tree (NeXusModule+Read.swift): every read method and property of
NXgroup and NXfield, run on local files (nx.load) and on the same files served by
`nxlua serve` (nx.remote), must give the same results.

The methods are enumerated from the binding itself (the classes' method tables and the
completions of their properties): a method or property that the probe below does not
exercise fails test_every_method_is_probed, so a read method added later gets its local
and remote runs compared here as soon as it is added to PROBES. Writing methods refuse
remote trees with "read-only remote file"; local-only readers (histogram) with an error
that says where to run them instead.

Files: the sample file of test_serve (h5py: compression, soft and hard links, compound,
strings, scalars, an empty field, a 1 MiB image), one written by nxlua itself
(test_remote_client's: NXdata with axes, a dangling link) and one written here with h5py
(1-D and 2-D NXdata with errors and axes, NXevent_data)."""
import os
import re
import subprocess
import textwrap

import h5py
import numpy as np
import pytest

from conftest import BIN
from test_remote_client import make_nxlua_file
from test_serve import PASSWORD, USER, Server, make_sample

FILES = ["sample.nxs", "nxlua.nxs", "binding.nxs"]

# What the probe runs on both trees, by method name (the Lua functions in PROBE_LUA).
GROUP_READ = {"child", "keys", "component", "find", "default", "refresh", "tree",
              "plot", "oplot", "logplot", "project"}
FIELD_READ = {"read", "sum", "prod", "min", "max", "mean", "blocks", "refresh", "tree",
              "plot", "oplot", "logplot"}
# Writing: local files only, refused on remote trees with the read-only error.
GROUP_WRITE = {"rename", "flush", "swmr"}
FIELD_WRITE = {"append", "resize", "flush", "rename"}
# Reading a local file only (the core is local): a clear error on remote trees.
GROUP_LOCAL_ONLY = {"histogram"}
# Every class has close (LuaClass); the probe closes the roots at the end.
COMMON = {"close"}

# Properties (what completion offers beyond children and attributes), probed on both.
GROUP_PROPS = {"nxname", "nxpath", "nxclass", "nxfilename", "parent", "root", "attrs",
               "nxsignal", "nxaxes", "nxerrors"}
FIELD_PROPS = {"nxname", "nxpath", "nxclass", "nxfilename", "parent", "root", "attrs",
               "shape", "dtype", "ndim", "size", "maxshape", "chunks", "compression",
               "nxvalue", "layout"}
METAMETHODS = {"__gc", "__name", "__methods", "__index", "__newindex", "__close",
               "__tostring", "__complete", "__len", "__pairs", "__pretty"}


# What the protocol cannot carry: the HDF REST API writes an unlimited maximum as 0, so a
# dimension whose maximum is 0 (an empty fixed-size field) reads as unlimited remotely.
KNOWN_DIFFERENCES = {
    ("/entry/empty", ".maxshape\t{1=0,2=3}", ".maxshape\t{1=-1,2=3}"),
}


def make_binding_file(path):
    with h5py.File(path, "w") as f:
        f.attrs["NX_class"] = "NXroot"
        f.attrs["default"] = "entry"
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        e.attrs["default"] = "line"
        e["title"] = "binding probe"
        line = e.create_group("line")
        line.attrs.update({"NX_class": "NXdata", "signal": "y", "axes": ["x"], "x_indices": 0})
        x = np.linspace(0.0, 4.5, 10)
        line["x"] = x
        line["x"].attrs["units"] = "mm"
        line["y"] = (x ** 2 + 1).astype("f8")
        line["y"].attrs["units"] = "counts"
        line["y"].attrs["long_name"] = "intensity"
        line["y_errors"] = np.sqrt(x ** 2 + 1)
        img = e.create_group("image")
        img.attrs.update({"NX_class": "NXdata", "signal": "z", "axes": ["row", "col"],
                          "row_indices": 0, "col_indices": 1})
        img["row"] = np.arange(6) * 0.5
        img["col"] = np.arange(8) * 0.25
        img.create_dataset("z", data=(np.arange(48).reshape(6, 8) % 7).astype("i2"),
                           chunks=(2, 8), compression="gzip", shuffle=True, maxshape=(None, 8))
        cube = e.create_group("cube")
        cube.attrs.update({"NX_class": "NXdata", "signal": "v"})
        cube["v"] = np.arange(4 * 5 * 6, dtype="u4").reshape(4, 5, 6)
        cube["v"].attrs["units"] = "counts"
        ev = e.create_group("bank1_events")
        ev.attrs["NX_class"] = "NXevent_data"
        rng = np.random.default_rng(3)
        counts = np.array([5, 0, 7, 3])
        ev["event_id"] = rng.integers(0, 4, counts.sum()).astype("u4")
        ev["event_time_offset"] = rng.uniform(0, 1000, counts.sum())
        ev["event_time_offset"].attrs["units"] = "microsecond"
        ev["event_time_zero"] = np.arange(4) / 60.0
        ev["event_time_zero"].attrs["units"] = "second"
        ev["event_index"] = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype("u8")
        e["compact"] = np.arange(3, dtype="i8")  # h5py: contiguous; the layout travels


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("binding")
    root = base / "data"
    root.mkdir()
    make_sample(root / "sample.nxs")
    make_nxlua_file(root / "nxlua.nxs", base)
    make_binding_file(root / "binding.nxs")
    users = base / "users"
    r = subprocess.run([BIN, "serve", "adduser", str(users), USER], input=PASSWORD + "\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return {"root": root, "users": users}


@pytest.fixture(scope="module")
def server(folder, tmp_path_factory):
    # a small max_request_size: big reads are split, as a slow link would want
    s = Server(folder["root"], folder["users"], "--max-request-size", "100000",
               log=tmp_path_factory.mktemp("log") / "serve.log")
    yield s
    assert s.stop() == 0


PROBE_LUA = r"""
local url, user, password, path, domain = ...
local loc  -- the tree's location, replaced by <loc> in everything written

local out = {}
local function emit(...)
  local parts = table.pack(...)
  for i = 1, parts.n do parts[i] = tostring(parts[i]) end
  local s = table.concat(parts, "\t")
  if loc then s = s:gsub(loc:gsub("%p", "%%%0"), "<loc>") end
  out[#out + 1] = s
end

local function hash(s)
  local h = 0
  for i = 1, #s do h = (h * 31 + s:byte(i)) % 2147483647 end
  return #s .. ":" .. h
end

local ser
local function num(x)
  if math.type(x) == "integer" then return string.format("%d", x) end
  if x ~= x then return "nan" end
  return string.format("%.17g", x)
end
ser = function(v, depth)
  depth = depth or 0
  local t = type(v)
  if t == "number" then return num(v) end
  if t == "string" then return string.format("%q", v) end
  if t == "nil" or t == "boolean" then return tostring(v) end
  if t == "function" then return "function" end
  if t == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. ser(v[k], depth + 1) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  local mt = getmetatable(v)
  local name = type(mt) == "table" and rawget(mt, "__name") or t
  if name == "ndarray" then
    local head = "ndarray<" .. v.dtype .. ">" .. ser(v.shape)
    if v.size <= 2048 then return head .. ser(v:totable()) end
    return head .. " sum=" .. num(v:sum()) .. " min=" .. num(v:min()) .. " max=" .. num(v:max())
  end
  if name == "NXgroup" or name == "NXfield" then return name .. ":" .. v.nxpath end
  if name == "NXattrs" then
    local parts = {}
    for k, a in pairs(v) do parts[#parts + 1] = k .. "=" .. ser(a, depth + 1) end
    table.sort(parts)
    return "attrs{" .. table.concat(parts, ",") .. "}#" .. #v
  end
  if name == "plot.Data" then return "plot.Data " .. ser(v:signal()) end
  if name == "plot.Figure" or (mt and rawget(mt, "__methods") and rawget(mt, "__methods").png) then
    return "figure png " .. hash(v:png())
  end
  return name .. " " .. tostring(v)
end

-- pcall'd: the value, or the error message (locations normalized by emit)
local function try(f, ...)
  local args = table.pack(...)
  local ok, text = pcall(function()  -- serializing may raise too (a figure's png)
    local r = table.pack(f(table.unpack(args, 1, args.n)))
    local parts = {}
    for i = 1, r.n do parts[#parts + 1] = ser(r[i]) end
    return table.concat(parts, " ; ")
  end)
  return ok and text or "error: " .. tostring(text)
end

-- print captured (tree() prints)
local function printed(f, ...)
  local lines, p = {}, print
  print = function(...) local t = table.pack(...); for i = 1, t.n do t[i] = tostring(t[i]) end; lines[#lines + 1] = table.concat(t, "\t") end
  local r = try(f, ...)
  print = p
  return table.concat(lines, "\n") .. "\n-> " .. r
end

local methods_seen = {}
local function methods_of(obj)
  local mt = getmetatable(obj)
  local names, mm = {}, {}
  for k in pairs(rawget(mt, "__methods")) do names[#names + 1] = k end
  for k in pairs(mt) do mm[#mm + 1] = k end
  table.sort(names); table.sort(mm)
  return names, mm
end

local function props_of(obj)
  local comp = getmetatable(obj).__complete(obj)
  local skip = {}
  if obj.nxclass ~= "NXfield" then for _, k in ipairs(obj:keys()) do skip[k] = true end end
  for k in pairs(obj.attrs) do skip[k] = true end
  local out = {}
  for _, k in ipairs(comp) do if not skip[k] then out[#out + 1] = k end end
  table.sort(out)
  return out
end

-- what groups and fields share: the class's methods, metamethods and properties (from
-- completion, less children and attributes), #, tostring, __pretty, completion
local function probe_object(kind, obj)
  emit(kind, obj.nxpath)
  local names, mm = methods_of(obj)
  emit("methods", table.concat(names, ","))
  emit("metamethods", table.concat(mm, ","))
  emit("props", table.concat(props_of(obj), ","))
  for _, p in ipairs(props_of(obj)) do emit("." .. p, try(function() return obj[p] end)) end
  emit("#", try(function() return #obj end))
  emit("tostring", tostring(obj))
  emit("__pretty", try(getmetatable(obj).__pretty, obj))
  local comp = getmetatable(obj).__complete(obj); table.sort(comp)
  emit("__complete", table.concat(comp, ","))
end

local function probe_group(g)
  probe_object("GROUP", g)
  local pairs_out = {}
  for name, obj in pairs(g) do pairs_out[#pairs_out + 1] = name .. "=" .. ser(obj) end
  emit("pairs", table.concat(pairs_out, " "))
  emit("keys", try(g.keys, g))
  for _, k in ipairs(g:keys()) do
    emit("child " .. k, try(g.child, g, k))
    emit("[" .. k .. "]", try(function() return g[k] end))
  end
  emit("child nope", try(g.child, g, "nope"))
  for _, key in ipairs({"nope", ".", "..", "./nope", "nope/deeper", "/entry", "NXdata", "NXfield", "NXentry"}) do
    emit("[" .. key .. "]", try(function() return g[key] end))
  end
  for _, a in ipairs({"NX_class", "default", "signal", "count_time", "shape_attr", "fixed"}) do
    emit("shortcut " .. a, try(function() return g[a] end))
  end
  for _, cls in ipairs({"NXdata", "NXentry", "NXfield", "NXevent_data"}) do
    emit("component " .. cls, try(g.component, g, cls))
    emit("find " .. cls, try(g.find, g, cls))
  end
  emit("default", try(g.default, g))
  emit("tree", printed(g.tree, g))
  emit("tree short", printed(g.tree, g, "short"))
  emit("tree bad", try(g.tree, g, "long"))
  emit("refresh", try(g.refresh, g))
  emit("keys after refresh", try(g.keys, g))
  if g.nxpath == "/" then emit("mode", g.mode) end
  if g.nxclass == "NXdata" then
    for _, sel in ipairs({0, 1, -1, "0:2", "1", "0.5", "0.25:1.5", ":, 0:2", "0.5:2.0, 0.5:1.0", "9.5:99"}) do
      emit("data[" .. tostring(sel) .. "]", try(function() return g[sel] end))
    end
    emit("plot", try(g.plot, g))
    emit("oplot", try(g.oplot, g))
    emit("logplot", try(g.logplot, g))
    emit("plot opts", try(g.plot, g, {title = "probe", width = 320, height = 240}))
    emit("project 0", try(g.project, g, {axis = 0, range = {0, 2}}))
    emit("project float", try(g.project, g, {axis = 0, range = {0.5, 2.0}}))
    emit("project all", try(g.project, g, {axis = 0}))
  else
    emit("data[0] of a non-NXdata", try(function() return g[0] end))
    emit("plot", try(g.plot, g))
    emit("project", try(g.project, g, {axis = 0}))
  end
end

local function probe_field(f)
  probe_object("FIELD", f)
  emit(".units", try(function() return f.units end))
  emit(".long_name", try(function() return f.long_name end))
  emit(".nope", try(function() return f.nope end))
  emit("read", try(f.read, f))
  for _, sel in ipairs({0, 1, -1, 99, 0.5, "0", "0:2", "::2", "-1", "..., -1", "0:2, 1", "1, ::3, 2:5",
                        ":0", "5:", "0, 0, 0, 0", "bad["}) do
    emit("[" .. tostring(sel) .. "]", try(function() return f[sel] end))
  end
  for _, m in ipairs({"sum", "prod", "min", "max", "mean"}) do
    emit(m, try(f[m], f))
    emit(m .. "(0)", try(f[m], f, 0))
    emit(m .. "(-1, true)", try(f[m], f, -1, true))
    emit(m .. "({0, 1})", try(f[m], f, {0, 1}))
  end
  local function blocks(n)
    local parts = {}
    local ok, err = pcall(function()
      for first, b in f:blocks(n) do parts[#parts + 1] = first .. ":" .. ser(b) end
    end)
    if not ok then parts[#parts + 1] = "error: " .. tostring(err) end
    return table.concat(parts, " | ")
  end
  emit("blocks(3)", blocks(3))
  emit("blocks()", blocks())
  emit("tree", printed(f.tree, f))
  emit("tree short", printed(f.tree, f, "short"))
  emit("refresh", try(f.refresh, f))
  emit("shape after refresh", try(function() return f.shape end))
  emit("plot", try(f.plot, f))
  emit("oplot", try(f.oplot, f))
  emit("logplot", try(f.logplot, f))
  emit("attrs", try(function() return f.attrs end))
end

local function walk(g, seen)
  probe_group(g)
  for _, k in ipairs(g:keys()) do
    local ok, c = pcall(g.child, g, k)
    if ok and c and not seen[c.nxpath] then
      seen[c.nxpath] = true
      if c.nxclass == "NXfield" then probe_field(c) else walk(c, seen) end
    end
  end
end

local function run(root)
  loc = root.nxfilename
  emit("TREE")
  walk(root, {["/"] = true})
  -- a field reached through a soft link, and an NXdata's members
  for _, p in ipairs({"entry/link_to_frames", "entry/shortcut", "entry/data/frames", "entry/line/y"}) do
    local ok, f = pcall(function() return root[p] end)
    if ok and f then emit("via " .. p, f.nxpath, ser(f.shape), try(function() return f[0] end)) end
  end
  for _, p in ipairs({"entry/line", "entry/image", "entry/data", "entry/cube"}) do
    local ok, d = pcall(function() return root[p] end)
    if ok and d then
      emit(p .. " nxsignal", try(function() return d.nxsignal end))
      emit(p .. " nxaxes", try(function() return d.nxaxes end))
      emit(p .. " nxerrors", try(function() return d.nxerrors end))
    end
  end
  emit("attrs #", #root.attrs, "__pretty", getmetatable(root.attrs).__pretty(root.attrs))
  root:close()
  emit("closed", try(root.keys, root), tostring(root))
  loc = nil
end

local r = nx.remote(url, {user = user, password = password})
local which = select(6, ...)
if which == "local" then run(nx.load(path)) else run(r:load(domain)) end
io.write(table.concat(out, "\n"), "\n")
"""


def probe(server, folder, tmp_path, name, which):
    script = tmp_path / "probe.lua"
    script.write_text(PROBE_LUA)
    e = {k: v for k, v in os.environ.items() if not k.startswith("NXLUA_")}
    r = subprocess.run([BIN, str(script), server.url, USER, PASSWORD, str(folder["root"] / name),
                        "/" + name, which], capture_output=True, text=True, timeout=600, env=e)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


@pytest.mark.parametrize("name", FILES)
def test_local_and_remote_read_the_same(server, folder, tmp_path, name):
    local = probe(server, folder, tmp_path, name, "local").splitlines()
    remote = probe(server, folder, tmp_path, name, "remote").splitlines()
    assert len(local) > 100
    where = None
    for i, (a, b) in enumerate(zip(local, remote)):
        if a.startswith(("GROUP\t", "FIELD\t")):
            where = a.split("\t")[1]
        if (where, a, b) in KNOWN_DIFFERENCES:
            continue
        assert a == b, f"line {i} differs\nlocal:  {a[:2000]}\nremote: {b[:2000]}\n(before: {local[max(0, i - 3):i]})"
    assert len(local) == len(remote)
    text = "\n".join(local)
    # the probe really read things (not errors everywhere)
    assert "ndarray<" in text and "figure png" in text and "plot.Data ndarray" in text
    if name == "binding.nxs":
        assert re.search(r"^blocks\(3\)\t0:ndarray<float64>\[10\]|^blocks\(3\)\t0:ndarray", text, re.M)
        assert "data[0.25:1.5]\tndarray" in text


def test_every_method_is_probed(server, folder, tmp_path):
    """The classes' own method tables and completions against what the probe covers: a
    new read method or property fails here until the probe runs it on both trees."""
    out = probe(server, folder, tmp_path, "binding.nxs", "remote")
    groups = {line.split("\t")[1] for line in out.splitlines() if line.startswith("methods\t") and "child" in line}
    fields = {line.split("\t")[1] for line in out.splitlines() if line.startswith("methods\t") and "child" not in line}
    assert len(groups) == 1 and len(fields) == 1, (groups, fields)
    gm, fm = set(groups.pop().split(",")), set(fields.pop().split(","))
    assert gm == GROUP_READ | GROUP_WRITE | GROUP_LOCAL_ONLY | COMMON, f"not probed: {gm - GROUP_READ - GROUP_WRITE - GROUP_LOCAL_ONLY - COMMON}"
    assert fm == FIELD_READ | FIELD_WRITE | COMMON, f"not probed: {fm - FIELD_READ - FIELD_WRITE - COMMON}"
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("metamethods\t"):
            want = METAMETHODS if "child" in lines[i - 1] else METAMETHODS - {"__pairs"}  # fields: no pairs
            assert set(line.split("\t")[1].split(",")) == want, line
    gp = {line.split("\t")[1] for line in out.splitlines() if line.startswith("props\t") and "nxsignal" in line}
    fp = {line.split("\t")[1] for line in out.splitlines() if line.startswith("props\t") and "shape" in line}
    assert gp == {",".join(sorted(GROUP_PROPS))}, gp
    assert fp == {",".join(sorted(FIELD_PROPS))}, fp
    # every read method name is called somewhere in the probe
    for m in GROUP_READ | FIELD_READ:
        assert re.search(rf"[.:]{m}\b|\"{m}\"", PROBE_LUA), m


WRITES = r"""
local url, user, password = ...
local r = nx.remote(url, {user = user, password = password})
local g = r:load("/binding.nxs")
local f = g.entry.line.y
local function e(fn, ...) local ok, err = pcall(fn, ...); print(ok, err) end
e(function() g.entry.new = 1 end)
e(function() g.entry.line = nil end)
e(function() f[0] = 1 end)
e(function() f.units = "mm" end)
e(function() f.attrs.units = "mm" end)
e(function() g.attrs.default = "x" end)
e(g.entry.rename, g.entry, "x")
e(g.flush, g)
e(g.swmr, g)
e(f.append, f, 1)
e(f.resize, f, 3)
e(f.flush, f)
e(f.rename, f, "z")
e(g.entry.bank1_events.histogram, g.entry.bank1_events, {tof = array.linspace(0, 1000, 5)})
e(nx.link, f)
local out <close> = nx.load(os.tmpname(), "w")
out.copied = f                      -- a remote field's values are read into the file
print(out.copied[3], out.copied.shape[1])
e(function() out.group = g.entry.line end)
e(crystal.peaks, g.entry)
local l = nx.load(select(4, ...))
print(l.entry.bank1_events:histogram{tof = array.linspace(0, 1000, 5)}:sum(), l.mode, g.mode)
"""


def test_writes_and_local_only_methods_refused_remotely(server, folder, tmp_path):
    script = tmp_path / "writes.lua"
    script.write_text(WRITES)
    e = {k: v for k, v in os.environ.items() if not k.startswith("NXLUA_")}
    r = subprocess.run([BIN, str(script), server.url, USER, PASSWORD, str(folder["root"] / "binding.nxs")],
                       capture_output=True, text=True, timeout=300, env=e)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    base = f"{server.url}/binding.nxs"
    expect = [
        (f"{base}: /entry: read-only remote file (assigning 'new' is not possible over nx.remote)"),
        (f"{base}: /entry: read-only remote file (assigning 'line' is not possible over nx.remote)"),
        (f"{base}: /entry/line/y: read-only remote file (writing into the field is not possible over nx.remote)"),
        (f"{base}: /entry/line/y: read-only remote file (writing into the field is not possible over nx.remote)"),
        (f"{base}: /entry/line/y: read-only remote file (setting an attribute is not possible over nx.remote)"),
        (f"{base}: /: read-only remote file (setting an attribute is not possible over nx.remote)"),
        (f"{base}: /entry: read-only remote file (renaming is not possible over nx.remote)"),
        (f"{base}: /: read-only remote file (flushing is not possible over nx.remote)"),
        (f"{base}: /: read-only remote file (SWMR writing is not possible over nx.remote)"),
        (f"{base}: /entry/line/y: read-only remote file (appending is not possible over nx.remote)"),
        (f"{base}: /entry/line/y: read-only remote file (resizing is not possible over nx.remote)"),
        (f"{base}: /entry/line/y: read-only remote file (flushing is not possible over nx.remote)"),
        (f"{base}: /entry/line/y: read-only remote file (renaming is not possible over nx.remote)"),
        (f"{base}: /entry/bank1_events: histogram reads the events of a local file; over nx.remote, run it next to the data"),
        (f"{base}: /entry/line/y: nx.link links objects of a local file, not of an nx.remote tree"),
    ]
    for line, want in zip(lines, expect):
        assert line.startswith("false\t") and want in line, (line, want)
    assert lines[len(expect)] == "3.25\t10", lines[len(expect)]
    assert lines[len(expect) + 1].startswith("false\t") and "cannot be copied into a file" in lines[len(expect) + 1]
    assert lines[len(expect) + 2].startswith("false\t") and "of an nx.remote tree" in lines[len(expect) + 2] \
        and "a local file is needed" in lines[len(expect) + 2], lines[len(expect) + 2]
    assert lines[len(expect) + 3] == "15\tr\tr", lines[len(expect) + 3]
