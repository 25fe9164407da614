"""nxlua catalog end to end: real-layout NeXus files written by h5py (NXmx/Eiger, areaDetector
NDAttributes, GDA-style entry1 with Celsius and keV) and stacks written by nxlua stack are
registered, then found by sample, temperature ranges across units, time windows, OR/NOT,
free text, facets and paging, from the CLI, from Lua and through nxlua serve; bad files are
recorded with the reason; a registration killed with SIGKILL leaves a consistent catalog."""
import base64
import json
import os
import pathlib
import random
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import h5py
import numpy as np
import pytest

from postgres_support import create_database, free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("NXLUA_BIN", str(ROOT / ".build" / "release" / "nxlua"))
SHARED = pathlib.Path("/work/shared/data")


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request, tmp_path):
    """The catalog location on each engine: a SQLite file, or a new database of the
    throwaway cluster."""
    if request.param == "sqlite":
        return tmp_path / "cat.sqlite"
    return create_database(request.getfixturevalue("postgres"))


def run(*args, timeout=120, **kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NXLUA_")}
    env.update(kw.pop("env", {}))
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, **kw)


def ok(*args, **kw):
    r = run(*args, **kw)
    assert r.returncode == 0, r.stderr + r.stdout
    return r


def nx_group(parent, name, cls):
    g = parent.create_group(name)
    g.attrs["NX_class"] = cls
    return g


def nxmx(path, sample, kelvin, start, frames=5, title="rotation scan"):
    """An Eiger NXmx file as DLS/Dectris write it: temperature in K, wavelength in angstrom."""
    with h5py.File(path, "w") as f:
        f.attrs["default"] = "entry"
        e = nx_group(f, "entry", "NXentry")
        e.attrs["default"] = "data"
        e["definition"] = "NXmx"
        e["title"] = title
        e["start_time"] = start
        e["end_time"] = start[:-1] + "Z" if start.endswith("Z") else start
        s = nx_group(e, "sample", "NXsample")
        s["name"] = sample
        t = s.create_dataset("temperature", data=kelvin)
        t.attrs["units"] = "K"
        i = nx_group(e, "instrument", "NXinstrument")
        i["name"] = "DIAMOND BEAMLINE I04"
        d = nx_group(i, "detector", "NXdetector")
        d["description"] = "Eiger 2XE 16M"
        spec = nx_group(d, "detectorSpecific", "NXcollection")
        spec["pixel_mask"] = np.zeros((8, 8), np.uint32)
        spec["sensor_material"] = "Si"
        b = nx_group(i, "beam", "NXbeam")
        w = b.create_dataset("incident_wavelength", data=0.9795)
        w.attrs["units"] = "angstrom"
        data = nx_group(e, "data", "NXdata")
        data.attrs["signal"] = "data"
        data.create_dataset("data", data=np.zeros((frames, 16, 16), np.uint32))


def area_detector(path, sample, celsius_per_frame, start):
    """areaDetector's NDFileHDF5 layout: per-frame NDAttributes (temperature in degC)."""
    with h5py.File(path, "w") as f:
        e = nx_group(f, "entry", "NXentry")
        i = nx_group(e, "instrument", "NXinstrument")
        nd = nx_group(i, "NDAttributes", "NXcollection")
        nd["SampleName"] = np.array([sample.encode()] * len(celsius_per_frame))
        t = nd.create_dataset("Temperature", data=np.array(celsius_per_frame, np.float64))
        t.attrs["units"] = "degC"
        nd["StartTime"] = start
        det = nx_group(i, "detector", "NXdetector")
        det.create_dataset("data", data=np.zeros((len(celsius_per_frame), 8, 8), np.uint16))
        data = nx_group(e, "data", "NXdata")
        data["data"] = h5py.SoftLink("/entry/instrument/detector/data")
        data.attrs["signal"] = "data"


def gda(path, formula, celsius, start, kev):
    """A GDA-style file: entry1, chemical formula, temperature in C, energy in keV, a scan command."""
    with h5py.File(path, "w") as f:
        e = nx_group(f, "entry1", "NXentry")
        e["scan_command"] = "scan th 0 10 0.5 pil 1"
        e["start_time"] = start
        s = nx_group(e, "sample", "NXsample")
        s["chemical_formula"] = formula
        s["name"] = formula
        t = s.create_dataset("temperature", data=celsius)
        t.attrs["units"] = "C"
        i = nx_group(e, "instrument", "NXinstrument")
        m = nx_group(i, "monochromator", "NXmonochromator")
        en = m.create_dataset("energy", data=kev)
        en.attrs["units"] = "keV"
        d = nx_group(e, "plot", "NXdata")
        d.attrs["signal"] = "counts"
        d["counts"] = np.arange(21.0)


def make_data(folder):
    """The test folder: 8 good files in two subfolders and three bad ones."""
    a, b = folder / "a", folder / "b"
    a.mkdir(parents=True)
    b.mkdir()
    nxmx(a / "lab6_100K.nxs", "LaB6", 100.0, "2026-12-01T10:00:00Z")
    nxmx(a / "lab6_300K.nxs", "LaB6", 300.0, "2026-12-01T22:00:00Z", title="rotation at room temperature")
    nxmx(a / "si_250K.nxs", "Si", 250.0, "2026-12-02T08:00:00Z", title="alignment")
    area_detector(b / "ceo2_ad.h5", "CeO2", [20.0, 21.0, 22.0], "2026-12-02T09:00:00Z")
    gda(b / "gda_hot.nxs", "LaB6", 400.0, "2026-12-03T08:00:00+01:00", 12.4)
    gda(b / "gda_cold.nxs", "Al2O3", -50.0, "2026-11-30T08:00:00Z", 8.0)
    with h5py.File(b / "two.nxs", "w") as f:
        for n, sample in (("entry1", "Ni"), ("entry2", "Cu")):
            e = nx_group(f, n, "NXentry")
            s = nx_group(e, "sample", "NXsample")
            s["name"] = sample
    (b / "notes.nxs").write_text("not an HDF5 file\n")
    (b / "empty.h5").write_bytes(b"")
    good = (a / "lab6_100K.nxs").read_bytes()
    (b / "truncated.nxs").write_bytes(good[: len(good) // 3])
    (b / "frames.cbf").write_bytes(b"skipped by the folder walk")
    return 10


def search(db, query, *extra):
    r = ok("catalog", "search", query, "--catalog", db, "--json", "--limit", "100", *extra)
    return [json.loads(line) for line in r.stdout.splitlines()]


def names(db, query, *extra):
    return sorted(pathlib.Path(e["path"]).name + ("" if e["entry"] in ("entry", "") else ":" + e["entry"]) for e in search(db, query, *extra))


def test_register_and_query_from_the_command_line(tmp_path, catalog):
    data = tmp_path / "data"
    make_data(data)
    db = catalog
    r = ok("catalog", "add", data, "--catalog", db)
    assert "10 files registered (11 entries), 0 unchanged, 3 bad" in r.stdout, r.stdout
    assert r.stderr == ""  # no progress bar when piped
    assert names(db, "sample:LaB6") == ["gda_hot.nxs:entry1", "lab6_100K.nxs", "lab6_300K.nxs"]
    # Kelvin, degC and C files found by one range given across units
    assert names(db, "temperature:[250 K TO 30 degC]") == ["ceo2_ad.h5", "lab6_300K.nxs", "si_250K.nxs"]
    assert names(db, "temperature:<0degC") == ["gda_cold.nxs:entry1", "lab6_100K.nxs", "si_250K.nxs"]
    assert names(db, "temperature:300K") == ["lab6_300K.nxs"]
    # +01:00 is honoured: 08:00+01:00 is 07:00Z on the third
    assert names(db, "start_time:[2026-12-02 TO 2026-12-03T07:00:00Z]") == ["ceo2_ad.h5", "gda_hot.nxs:entry1", "si_250K.nxs"]
    assert names(db, "(sample:Ni OR sample:Cu) AND NOT sample:Cu") == ["two.nxs:entry1"]
    assert names(db, "\"room temperature\"") == ["lab6_300K.nxs"]
    assert names(db, "rotation AND NOT \"room temperature\"") == ["lab6_100K.nxs"]
    # several phrases in one junction are one text search, with fields beside them
    assert names(db, "\"room temperature\" OR alignment") == ["lab6_300K.nxs", "si_250K.nxs"]
    assert names(db, "\"room temperature\" OR alignment OR sample:CeO2") == ["ceo2_ad.h5", "lab6_300K.nxs", "si_250K.nxs"]
    assert names(db, "rotation AND temperature AND sample:LaB6") == ["lab6_300K.nxs"]
    assert names(db, "(rotation OR alignment) AND \"room temperature\"") == ["lab6_300K.nxs"]
    assert names(db, "rotation AND alignment") == []
    assert names(db, "energy:[10 keV TO 13000 eV]") == ["gda_hot.nxs:entry1"]
    assert names(db, "wavelength:0.9795A") == ["lab6_100K.nxs", "lab6_300K.nxs", "si_250K.nxs"]
    assert names(db, "formula:Al2O3 scan_command:\"scan th 0 10 0.5 pil 1\"") == ["gda_cold.nxs:entry1"]
    assert names(db, "meta.instrument/detector/detectorSpecific/sensor_material:Si") == ["lab6_100K.nxs", "lab6_300K.nxs", "si_250K.nxs"]
    assert names(db, "detector:\"Eiger 2XE 16M\" frames:5") == ["lab6_100K.nxs", "lab6_300K.nxs", "si_250K.nxs"]
    # values as harvested, beside the SI ones
    [ceo2] = search(db, "sample:CeO2")
    assert ceo2["fields"]["temperature"] == {"value": 21.0, "units": "degC"}
    assert abs(ceo2["si"]["temperature"] - 294.15) < 1e-9
    assert ceo2["fields"]["signal_shape"] == "3x8x8" and ceo2["fields"]["signal_dtype"] == "uint16"
    # bad files: recorded with the reason, naming the file
    bad = {pathlib.Path(e["path"]).name: e["fields"]["error"] for e in search(db, "status:bad")}
    assert sorted(bad) == ["empty.h5", "notes.nxs", "truncated.nxs"]
    assert "notes.nxs: not an HDF5/NeXus file" in bad["notes.nxs"]
    assert "empty.h5: empty file" in bad["empty.h5"]
    assert "truncated.nxs" in bad["truncated.nxs"]
    assert ok("catalog", "search", "kind:raw", "--catalog", db, "--count").stdout.strip() == "11"
    facets = ok("catalog", "search", "", "--catalog", db, "--facets", "sample").stdout.splitlines()
    assert facets[0] == "3\tLaB6"
    order = [e["fields"]["temperature"] for e in search(db, "sample:LaB6", "--order", "-temperature")]
    assert order == [{"value": 400.0, "units": "C"}, {"value": 300.0, "units": "K"}, {"value": 100.0, "units": "K"}]


def test_rerun_skips_unchanged_files_and_harvests_changed_ones(tmp_path, catalog):
    data = tmp_path / "data"
    make_data(data)
    db = catalog
    ok("catalog", "add", data, "--catalog", db)
    assert "0 files registered (0 entries), 10 unchanged" in ok("catalog", "add", data, "--catalog", db).stdout
    nxmx(data / "a" / "si_250K.nxs", "Si", 260.0, "2026-12-02T08:00:00Z")
    os.utime(data / "a" / "si_250K.nxs", (time.time() + 5, time.time() + 5))
    assert "1 files registered (1 entries), 9 unchanged" in ok("catalog", "add", data, "--catalog", db).stdout
    assert names(db, "temperature:260K") == ["si_250K.nxs"]
    assert names(db, "temperature:250K") == []
    if not isinstance(db, pathlib.Path):
        return
    # the default location: $NXLUA_CATALOG
    r = ok("catalog", "search", "sample:Si", "--count", env={"NXLUA_CATALOG": str(db)})
    assert r.stdout.strip() == "1"
    # else ./nxlua-catalog.sqlite
    ok("catalog", "add", data / "a", cwd=tmp_path)
    assert (tmp_path / "nxlua-catalog.sqlite").exists()


def test_malformed_queries_point_at_the_position(tmp_path):
    db = tmp_path / "cat.sqlite"
    data = tmp_path / "data"
    make_data(data)
    ok("catalog", "add", data / "a", "--catalog", db)
    r = run("catalog", "search", "sample:LaB6 AND (temperature:[1 K TO 2 K]", "--catalog", db)
    assert r.returncode == 1
    assert "at position 42: ')' expected to close the '(' at position 17" in r.stderr, r.stderr
    assert "\n  sample:LaB6 AND (temperature:[1 K TO 2 K]\n" + " " * 43 + "^" in r.stderr
    r = run("catalog", "search", "samples:LaB6", "--catalog", db)
    assert "unknown field 'samples'" in r.stderr and "sample" in r.stderr
    r = run("catalog", "search", "temperature:[1 mm TO 2 mm]", "--catalog", db)
    assert "'mm' measures length, not temperature" in r.stderr
    r = run("catalog", "search", "start_time:[yesterday TO *]", "--catalog", db)
    assert "'yesterday' is not a time for 'start_time'" in r.stderr
    r = run("catalog", "add", data / "nothing-here", "--catalog", db)
    assert r.returncode == 1 and "nothing-here: no such file or folder" in r.stderr
    mapping = tmp_path / "m.toml"
    mapping.write_text("[field.temperature]\ntype = \"number\"\ndimension = \"temprature\"\npaths = [\"x\"]\n")
    r = run("catalog", "add", data, "--catalog", db, "--mapping", mapping)
    assert r.returncode == 1 and f"{mapping}:1: field 'temperature': unknown dimension 'temprature'" in r.stderr


HOSTILE = ["x' OR '1'='1", "LaB6\" OR 1=1 --", "'); DROP TABLE entries; --", "a\\", "NEAR(a b)", "%", "_", "\u00e9",
           "$1", "?", "]]", "sample:*)"]


def lua_string(s):
    return '"' + "".join(f"\\{b}" for b in s.encode()) + '"'


HOSTILE_LUA = r"""
local cat = nx.catalog(...)
local function quoted(s) return '"' .. s:gsub('\\', '\\\\'):gsub('"', '\\"') .. '"' end
for _, h in ipairs({HOSTILE}) do
  for _, t in ipairs({ {sample = h}, {title = h}, {text = h}, {query = "sample:" .. quoted(h)},
                       {query = "meta." .. h:gsub("[%s():]", "") .. ":" .. quoted(h)}, {temperature = {from = h, to = h}},
                       {since = h}, {cursor = h} }) do
    local ok, found = pcall(cat.search, cat, t)
    if ok then
      if t.sample or t.title or (t.query and t.query:sub(1, 7) == "sample:") then assert(#found == 0, h) end
    else
      assert(found:find("catalog query") or found:find("bad argument"), found)
    end
  end
  print(pcall(cat.facets, cat, h))
end
print("count", cat:count())
"""


def test_hostile_strings_are_inert(tmp_path, catalog):
    db = catalog
    data = tmp_path / "data"
    make_data(data)
    ok("catalog", "add", data, "--catalog", db)
    before = ok("catalog", "search", "", "--catalog", db, "--count").stdout
    for h in HOSTILE[:3]:  # through the command line
        for query in (f"sample:{json.dumps(h)}", json.dumps(h)):
            r = run("catalog", "search", query, "--catalog", db, "--json")
            assert r.returncode in (0, 1) and "AddressSanitizer" not in r.stderr, r.stderr
            if query.startswith("sample:"):
                assert r.returncode == 0 and r.stdout == "", (query, r.stdout)
    # every string in every place a value goes, through Lua: never an error from the
    # database, never a match
    script = tmp_path / "hostile.lua"
    script.write_text(HOSTILE_LUA.replace("{HOSTILE}", "{" + ", ".join(lua_string(h) for h in HOSTILE) + "}"))
    r = ok(script, str(db))
    assert f"count\t{before.strip()}" in r.stdout, r.stdout + r.stderr
    assert "unknown field" in r.stdout
    assert ok("catalog", "search", "", "--catalog", db, "--count").stdout == before
    assert len(names(db, "sample:LaB6")) == 3
    if not isinstance(db, pathlib.Path):
        return
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


def test_lua_catalog(tmp_path, catalog):
    data = tmp_path / "data"
    make_data(data)
    db = catalog
    code = f"""
    local cat = nx.catalog("{db}")
    local registered, unchanged, bad = cat:add("{data}")
    print("added", registered, unchanged, bad)
    local found = cat:search{{sample = "LaB6", temperature = {{from = 250, to = 30, units = "degC"}}}}
    assert(#found == 0, "250 degC > 30 degC: nothing")
    found = cat:search{{sample = "LaB6", temperature = {{from = -200, to = 500, units = "degC"}}, text = "rotation",
                        since = "2026-12-01", order = "-start_time", limit = 50}}
    for _, e in ipairs(found) do print("found", e.path:match("[^/]+$"), e.temperature, e.units.temperature, e.si.temperature) end
    local e = found[1]
    local root = e:load()
    print("title", root.entry.title:read())
    print("meta", e.metadata["instrument/detector/detectorSpecific/sensor_material"])
    for _, f in ipairs(cat:facets("sample")) do print("facet", f.value, f.count) end
    local page = cat:search{{limit = 4}}
    print("page", #page, page.count, page.next ~= nil)
    local rest = cat:search{{limit = 100, cursor = page.next}}
    print("rest", #rest, rest.next)
    print("count", cat:count("status:bad"), cat:count{{kind = "raw", sample = "LaB6"}})
    print("string", #cat:search("temperature:[250 K TO 30 degC]"))
    local ok, err = pcall(cat.search, cat, "sample:(")
    print("error", err)
    ok, err = pcall(cat.search, cat, {{colour = "red"}})
    print("error", err)
    help(nx.catalog)
    help(cat.search)
    """
    r = ok("-e", code)
    lines = r.stdout.splitlines()
    assert "added\t10\t0\t3" in lines
    assert [l for l in lines if l.startswith("found")] == ["found\tlab6_300K.nxs\t300.0\tK\t300.0", "found\tlab6_100K.nxs\t100.0\tK\t100.0"]
    assert "title\trotation at room temperature" in lines
    assert "meta\tSi" in lines
    assert "facet\tLaB6\t3" in lines
    assert "page\t4\t4\ttrue" in lines and "rest\t7\tnil" in lines
    assert "count\t3\t3" in lines
    assert "string\t3" in lines
    assert any(l.startswith("error\t") and "catalog query: at position 8" in l for l in lines), r.stdout
    assert any("unknown option 'colour'" in l for l in lines), r.stdout
    assert "nx.catalog([location [, options]]) -> catalog" in r.stdout
    assert "cat:search(query) -> {entries}" in r.stdout


def test_watch_delivers_new_matching_entries(tmp_path):
    db = tmp_path / "cat.sqlite"
    data = tmp_path / "data"
    make_data(data)
    ok("catalog", "add", data, "--catalog", db)
    script = tmp_path / "watch.lua"
    script.write_text("""
    local cat = nx.catalog(...)
    local n = cat:watch("sample:Zr OR sample:Hf", function(e)
      print("new", e.path:match("[^/]+$"), e.sample, e.temperature)
      io.stdout:flush()
      return e.sample ~= "Hf"
    end, {timeout = 300, from_start = true})
    print("delivered", n)
    """)
    p = subprocess.Popen([BIN, script, db], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        nxmx(data / "zr.nxs", "Zr", 77.0, "2026-12-04T10:00:00Z")
        nxmx(data / "other.nxs", "Ti", 77.0, "2026-12-04T10:00:00Z")
        ok("catalog", "add", data, "--catalog", db)
        nxmx(data / "hf.nxs", "Hf", 20.0, "2026-12-04T11:00:00Z")
        ok("catalog", "add", data / "hf.nxs", "--catalog", db)
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert out.splitlines() == ["new\tzr.nxs\tZr\t77.0", "new\thf.nxs\tHf\t20.0", "delivered\t2"], out


def make_frames(folder, numbers):
    folder.mkdir(parents=True, exist_ok=True)
    code = f"""
    for _, n in ipairs({{{", ".join(map(str, numbers))}}}) do
      local f, h = detector.synthetic{{seed = n, frame = n, modules = {{1, 1}}, spots = 5}}
      detector.write(string.format("{folder}/scan_%05d.cbf", n), f, h)
    end"""
    ok("-e", code)
    return [folder / f"scan_{n:05d}.cbf" for n in numbers]


def wait_for(predicate, timeout=60, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_stack_registers_its_output_at_start_and_end(tmp_path):
    db = tmp_path / "cat.sqlite"
    frames = make_frames(tmp_path / "frames", range(1, 7))
    watched = tmp_path / "watched"
    watched.mkdir()
    out = tmp_path / "stack.nxs"
    p = subprocess.Popen([BIN, "stack", "--watch", watched, "--out", out, "--frames", "6", "--catalog", db, "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for f in frames[:2]:
            os.link(f, watched / f.name)

        def running():
            if not db.exists():
                return False
            r = run("catalog", "search", "kind:stack", "--catalog", db, "--json")
            return r.returncode == 0 and '"running"' in r.stdout
        wait_for(running, what="the stack registered as running")
        [e] = search(db, "kind:stack")
        assert e["path"] == str(out) and e["fields"]["status"] == "running"
        for f in frames[2:]:
            os.link(f, watched / f.name)
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    [e] = search(db, "kind:stack")
    assert e["fields"]["status"] == "done"
    assert e["fields"]["frames"] == 6 and e["fields"]["bad_frames"] == 0
    assert e["fields"]["signal_shape"] == "6x195x487"
    assert names(db, "status:done frames:6 detector:*") == ["stack.nxs"]


def test_macro_results_are_registered_as_derived_data(tmp_path):
    db = tmp_path / "cat.sqlite"
    journal = tmp_path / "journal.sqlite"
    raw = tmp_path / "raw.nxs"
    nxmx(raw, "LaB6", 300.0, "2026-12-01T10:00:00Z")
    macros = tmp_path / "macros"
    macros.mkdir()
    (macros / "reduce.lua").write_text("""
    on("run.stop", "reduce", function(ev)
      local out = ev.file:gsub("%.nxs$", "_reduced.nxs")
      macro.write_process(out, "summed", {parameters = {threshold = 3}, fields = {total = 42}})
    end)
    """)
    r = ok("trigger", "run.start", "--journal", journal, "--file", raw)
    uid = r.stdout.split()[1]
    runner = subprocess.Popen([BIN, "macros", macros, "--journal", journal, "--catalog", db, "--poll", "0.005", "--from-start"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ok("trigger", "run.stop", "--journal", journal, "--run", uid, "--file", raw)

        def registered():
            r = run("catalog", "search", "kind:derived", "--catalog", db, "--count")
            return r.returncode == 0 and r.stdout.strip() == "1"
        wait_for(registered, what="the derived file in the catalog")
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.communicate(timeout=60)
    [d] = search(db, "kind:derived")
    assert d["path"] == str(tmp_path / "raw_reduced.nxs")
    assert d["fields"]["source"] == str(raw)
    assert d["fields"]["program"] == "nxlua macros"
    assert len(d["fields"]["macro_hash"]) == 64
    assert names(db, f"source:{json.dumps(str(raw))}") == ["raw_reduced.nxs"]


def get(port, path, auth="ray:secret"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_serve_answers_catalog_queries_for_its_folder_only(tmp_path):
    data = tmp_path / "data"
    make_data(data)
    db = tmp_path / "cat.sqlite"
    ok("catalog", "add", data, "--catalog", db)
    users = tmp_path / "users"
    ok("serve", "adduser", users, "ray", input="secret\n")
    port = free_port()
    # only data/a is served: data/b's entries must not exist for its clients
    srv = subprocess.Popen([BIN, "serve", data / "a", "--host", "127.0.0.1", "--port", str(port), "--users", users,
                            "--catalog", db], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(up, what="the server")
        q = urllib.parse.quote
        status, _ = get(port, "/nxlua/catalog?q=" + q("sample:LaB6"), auth=None)
        assert status == 401
        status, body = get(port, "/nxlua/catalog?q=" + q("sample:LaB6"))
        assert status == 200, body
        assert sorted(e["domain"] for e in body["entries"]) == ["/lab6_100K.nxs", "/lab6_300K.nxs"]  # not gda_hot in b/
        assert body["next"] is None
        assert all(str(tmp_path) not in json.dumps(e) for e in body["entries"])
        status, body = get(port, "/nxlua/catalog?count=1&q=")
        assert body == {"count": 3}
        status, body = get(port, "/nxlua/catalog?facets=sample&q=")
        assert body["facets"] == [{"value": "LaB6", "count": 2}, {"value": "Si", "count": 1}]
        status, body = get(port, "/nxlua/catalog?count=1&q=" + q("status:bad"))
        assert body == {"count": 0}
        seen, cursor = [], None
        while True:
            status, body = get(port, "/nxlua/catalog?limit=1&order=-start_time&q=" + ("&cursor=" + cursor if cursor else ""))
            assert status == 200, body
            seen += [e["domain"] for e in body["entries"]]
            cursor = body["next"]
            if cursor is None:
                break
        assert seen == ["/si_250K.nxs", "/lab6_300K.nxs", "/lab6_100K.nxs"]
        status, body = get(port, "/nxlua/catalog?q=" + q("temperature:[1 K TO"))
        assert status == 400 and "catalog query: at position" in body["error"], body
        for h in HOSTILE:
            status, body = get(port, "/nxlua/catalog?q=" + q(f"sample:{json.dumps(h)}"))
            assert status in (200, 400) and (status == 400 or body["entries"] == []), (h, body)
        # from Lua: the server's catalog, entries loaded through nx.remote
        code = f"""
        local cat = nx.catalog("http://127.0.0.1:{port}", {{user = "ray", password = "secret"}})
        local found = cat:search{{sample = "LaB6", temperature = {{from = 250, to = 350, units = "K"}}, order = "-start_time"}}
        print(#found, found[1].path, found[1].temperature, found[1].units.temperature)
        print(found[1]:load().entry.title:read())
        print(cat:count{{text = "rotation"}}, cat:facets("sample")[1].value, #cat:search{{query = "sample:Si OR sample:CeO2"}})
        print(pcall(cat.add, cat, "x"))
        """
        r = ok("-e", code)
        lines = r.stdout.splitlines()
        assert lines[0] == "1\t/lab6_300K.nxs\t300.0\tK", r.stdout
        assert lines[1] == "rotation at room temperature"
        assert lines[2] == "2\tLaB6\t1"
        assert "a server's catalog is read-only here" in lines[3]
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait(timeout=60)


def test_registration_killed_at_random_moments_leaves_a_consistent_catalog(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    n = 120
    for i in range(n):
        nxmx(data / f"scan_{i:04d}.nxs", "LaB6" if i % 2 else "Si", 100.0 + i, "2026-12-01T10:00:00Z", frames=1)
    db = tmp_path / "cat.sqlite"
    rng = random.Random(16)
    for attempt in range(4):
        p = subprocess.Popen([BIN, "catalog", "add", data, "--catalog", db], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.05, 1.5))
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        if db.exists():
            con = sqlite3.connect(db)
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            tables = {t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "files" in tables:  # else killed before its schema was committed
                files = con.execute("SELECT COUNT(*) FROM files").fetchone()[0]
                entries = con.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
                assert files == entries  # a file and its entries are committed together
            con.close()
    r = ok("catalog", "add", data, "--catalog", db, timeout=600)
    assert r.stdout.endswith(f"unchanged\n") and "bad" not in r.stdout
    assert ok("catalog", "search", "", "--catalog", db, "--count").stdout.strip() == str(n)
    assert ok("catalog", "search", "sample:LaB6", "--catalog", db, "--count").stdout.strip() == str(n // 2)
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(DISTINCT path) FROM entries").fetchone()[0] == n
    # the free-text index agrees with the table after the kills
    assert con.execute("INSERT INTO entries_fts(entries_fts) VALUES('integrity-check')") is not None
    con.close()


QUERIES = ["sample:LaB6", "(rotation OR alignment) AND \"room temperature\"", "rotation OR alignment OR sample:CeO2", "temperature:[250 K TO 30 degC]", "NOT sample:LaB6", "\"room temperature\" OR formula:Al2O3",
           "start_time:[2026-12-01 TO *] AND NOT exists:energy", "sample:La* OR sample:c*", "status:bad", "frames:[1 TO 4]",
           "meta.entry1/sample/chemical_formula:*", "title:* AND wavelength:>0.5A"]


SAME = """
local cat = nx.catalog(...)
local queries = {QUERIES}
local function show(v) return v == nil and "-" or tostring(v) end
for _, q in ipairs(queries) do
  for _, order in ipairs({"-start_time", "sample", "temperature", "-frames"}) do
    -- in pages of three: the cursors too
    local page, n = cat:search{query = q, order = order, limit = 3}, 0
    while true do
      for _, e in ipairs(page) do
        print(q, order, e.path, e.entry, show(e.sample), show(e.temperature), show(e.units.temperature), show(e.si.temperature),
              show(e.start_time), show(e.frames), show(e.status))
        n = n + 1
      end
      if page.next == nil then break end
      page = cat:search{query = q, order = order, limit = 3, cursor = page.next}
    end
    print(q, order, "total", n, cat:count(q))
  end
  for _, f in ipairs(cat:facets("sample", q)) do print(q, "facet", f.value, f.count) end
end
"""


def test_same_answers_on_both_engines(tmp_path, postgres):
    """The same files and queries on SQLite and PostgreSQL: the same entries, values,
    orders, pages (cursors) and facets."""
    data = tmp_path / "data"
    make_data(data)
    lite = tmp_path / "cat.sqlite"
    pg = create_database(postgres)
    script = tmp_path / "same.lua"
    script.write_text(SAME.replace("{QUERIES}", "{" + ", ".join(json.dumps(q) for q in QUERIES) + "}"))
    outputs = []
    for db in (lite, pg):
        ok("catalog", "add", data, "--catalog", db)
        outputs.append(ok(script, str(db)).stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].count("\ttotal\t") == len(QUERIES) * 4
    assert "\ttotal\t11\t11" not in outputs[0]  # the queries select
    assert len(search(lite, "")) == 11


def test_help_texts():
    r = ok("catalog", "--help")
    assert "nxlua catalog add PATH..." in r.stdout and "temperature:[250 K TO 30 degC]" in r.stdout
    assert "--catalog DB" in ok("stack", "--help").stdout
    assert "--catalog DB" in ok("serve", "--help").stdout
    assert "--catalog DB" in ok("macros", "--help").stdout


def test_external_links_are_followed_only_next_to_the_file(tmp_path):
    """An Eiger-style master's data file next to it is read (frame count, signal shape);
    a link to a file elsewhere is not: its metadata must never reach a served catalog."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "scan").mkdir(parents=True)
    outside.mkdir()
    for path in (data / "scan" / "scan_data_000001.h5", outside / "secret.nxs"):
        with h5py.File(path, "w") as f:
            e = nx_group(f, "entry", "NXentry")
            e["title"] = "secret title" if "secret" in path.name else "frames"
            d = nx_group(e, "data", "NXdata")
            d.attrs["signal"] = "data"
            d["data"] = np.zeros((7, 4, 5), "u2")
    with h5py.File(data / "scan" / "scan_master.h5", "w") as f:
        e = nx_group(f, "entry", "NXentry")
        d = nx_group(e, "data", "NXdata")
        d.attrs["signal"] = "data"
        d["data"] = h5py.ExternalLink("scan_data_000001.h5", "/entry/data/data")
    with h5py.File(data / "linked_out.nxs", "w") as f:
        e = nx_group(f, "entry", "NXentry")
        e["elsewhere"] = h5py.ExternalLink(str(outside / "secret.nxs"), "/entry")
        e["data"] = h5py.ExternalLink("../outside/secret.nxs", "/entry/data")
    db = tmp_path / "cat.sqlite"
    ok("catalog", "add", data, "--catalog", db)
    r = ok("catalog", "search", "exists:frames", "--catalog", db)
    assert "scan_master.h5" in r.stdout and "frames=7" in r.stdout and "signal_shape=7x4x5" in r.stdout, r.stdout
    assert "linked_out.nxs" not in r.stdout
    assert ok("catalog", "search", '"secret title"', "--catalog", db).stdout.strip() == ""
    assert "linked_out.nxs" in ok("catalog", "search", "", "--catalog", db).stdout


def test_checksums_on_request(tmp_path):
    import hashlib
    data = tmp_path / "data"
    make_data(data)
    files = sorted(data.rglob("*.nxs"))
    db = tmp_path / "cat.sqlite"
    ok("catalog", "add", data, "--catalog", db)
    assert ok("catalog", "search", "exists:sha256", "--catalog", db, "--count").stdout.strip() == "0"   # not by default
    ok("catalog", "add", data, "--catalog", db, "--checksum", "--force")
    for f in files:
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        out = ok("catalog", "search", f"sha256:{digest}", "--catalog", db).stdout
        assert str(f) in out, (f, out)
        assert all(line.startswith(str(f)) for line in out.splitlines()), out
    # from Lua, with the options table
    other = tmp_path / "lua.sqlite"
    lua = f"""
        local cat = nx.catalog({json.dumps(str(other))})
        print(cat:add({json.dumps(str(files[0]))}, {{checksum = true}}))
        local found = cat:search("exists:sha256")
        print(#found, found[1].sha256)
    """
    out = ok("-e", lua).stdout.split("\n")
    assert out[0].split("\t")[0] == "1"
    assert out[1].split("\t")[1] == hashlib.sha256(files[0].read_bytes()).hexdigest()


SPEC_FOR_CATALOG = """#F lab6.spec
#E 1764547200
#D Mon Dec 01 10:00:00 2025
#C sample: LaB6 powder, capillary
#O0 th  tth  temp

#S 1  ascan  th 0 1 4 1
#D Mon Dec 01 10:05:00 2025
#T 1  (Seconds)
#P0 0.5 1.0 295.0
#C Temperature = 300 K
#N 3
#L th  Tsample  detector
0 299.5 10
0.25 300.5 12
0.5 300 14

#S 2  ascan  th 0 1 2 1
#D Mon Dec 01 10:15:00 2025
#C sample: Si
#P0 0.5 1.0 25.0
#N 2
#L th  detector
0 1
1 2
"""


def test_spec_scans_are_catalog_entries(tmp_path):
    """catalog add reads a SPEC file as one entry per scan (S1, S2 as spec2nexus names
    them): sample from comments, temperature from a column, a motor or a comment, and
    e:load() gives the scan."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "lab6.spec").write_text(SPEC_FOR_CATALOG)
    (tmp_path / "data" / "notes.txt").write_text("# not found by the walk\n")
    db = str(tmp_path / "c.sqlite")
    r = ok("catalog", "add", tmp_path / "data", "--catalog", db)
    assert "1 files registered (2 entries)" in r.stdout, r.stdout
    assert names(db, "temperature:[290 K TO 310 K]") == ["lab6.spec:S1"]
    [s1] = search(db, "temperature:[290 K TO 310 K]")
    # the Tsample column's mean wins over the comment and the temp motor
    assert s1["fields"]["temperature"] == {"value": 300.0, "units": "K"}
    assert s1["fields"]["sample"] == "LaB6 powder" and s1["fields"]["frames"] == 3
    assert s1["fields"]["start_time"] == "2025-12-01T10:05:00"
    assert s1["metadata"]["positioners/temp"] == "295.0" and s1["metadata"]["spec/columns"] == "th Tsample detector"
    [s2] = search(db, "sample:Si")
    assert s2["entry"] == "S2" and s2["fields"]["temperature"] == {"value": 25.0, "units": "K"}
    assert names(db, "ascan AND capillary") == ["lab6.spec:S1", "lab6.spec:S2"]
    code = f"""local c = nx.catalog({json.dumps(db)})
    local e = c:search{{query = "sample:Si"}}[1]
    local s = e:load()
    print(e.entry, s.command, s.data.detector:sum())"""
    r = ok("-e", code)
    assert r.stdout.split("\t") == ["S2", "ascan  th 0 1 2 1", "3.0\n"], r.stdout
