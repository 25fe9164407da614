"""Per-user folders of `nxlua serve` (docs/remote.md, "Users and passwords"): a user the
users file limits to folders reads, lists, finds in the catalog and evaluates only what
is under them, through every route (HDF REST with h5pyd and plain HTTP, the viewer's
routes, /nxlua/catalog, /nxlua/eval), symlinks included; a refusal never tells whether
the path exists."""
import json
import subprocess
import urllib.parse

import h5py
import numpy as np
import pytest
import requests

from conftest import BIN
from test_serve import Server, h5pyd, make_sample

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "staff": "staff-pw"}


def adduser(users, name, *extra):
    r = subprocess.run([BIN, "serve", "adduser", str(users), name, *extra], input=PASSWORDS.get(name, "pw") + "\n",
                       capture_output=True, text=True, timeout=60)
    return r


def sample_with_metadata(path, sample, temperature):
    make_sample(path)
    with h5py.File(path, "a") as f:
        s = f["entry"].create_group("sample")
        s.attrs["NX_class"] = "NXsample"
        s["name"] = sample
        s["temperature"] = temperature
        s["temperature"].attrs["units"] = "K"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("access")
    root = base / "data"
    for p in ("proposals/p1", "proposals/p2", "proposals/p10", "staff"):
        (root / p).mkdir(parents=True)
    sample_with_metadata(root / "proposals/p1/a.nxs", "LaB6", 100.0)
    sample_with_metadata(root / "proposals/p2/b.nxs", "LaB6", 300.0)
    sample_with_metadata(root / "proposals/p10/c.nxs", "Si", 300.0)   # p1 is not a prefix of p10
    sample_with_metadata(root / "staff/calib.nxs", "CeO2", 295.0)
    sample_with_metadata(root / "top.nxs", "Ni", 10.0)
    (root / "proposals/p1/link_to_b.nxs").symlink_to(root / "proposals/p2/b.nxs")
    (root / "proposals/p1/link_to_p2").symlink_to(root / "proposals/p2")
    users = base / "users"
    assert adduser(users, "alice", "--folders", "/proposals/p1").returncode == 0
    assert adduser(users, "bob", "--folders", "/proposals/p2,/staff").returncode == 0
    r = adduser(users, "staff")
    assert r.returncode == 0 and "reads: everything" in r.stderr, r.stderr
    db = base / "catalog.sqlite"
    subprocess.run([BIN, "catalog", "add", str(root), "--catalog", str(db)], check=True, capture_output=True, timeout=300)
    return {"root": root, "users": users, "db": db, "base": base}


@pytest.fixture(scope="module")
def server(tree, tmp_path_factory):
    s = Server(tree["root"], tree["users"], "--allow-eval", "--catalog", str(tree["db"]),
               log=tmp_path_factory.mktemp("log") / "serve.log")
    yield s
    assert s.stop() == 0


def get(server, who, route, **params):
    return requests.get(server.url + route, params=params, auth=(who, PASSWORDS[who]), timeout=60)


def test_the_users_file_keeps_folders(tree):
    text = tree["users"].read_text()
    assert any(line.startswith("alice:$2") and line.endswith(":/proposals/p1") for line in text.splitlines())
    assert any(line.startswith("bob:$2") and line.endswith(":/proposals/p2,/staff") for line in text.splitlines())
    # a new password keeps the folders; --folders / gives back everything
    other = tree["base"] / "users-copy"
    other.write_text(text)
    assert adduser(other, "alice").returncode == 0
    assert "alice" in other.read_text() and ":/proposals/p1\n" in other.read_text()
    r = adduser(other, "alice", "--folders", "/")
    assert r.returncode == 0 and "reads: everything" in r.stderr
    assert ":/proposals/p1" not in other.read_text()
    for bad, why in [("proposals", "must start with '/'"), ("/a/../b", "'..'"), ("", "needs a value")]:
        r = adduser(other, "eve", "--folders", bad) if bad else adduser(other, "eve", "--folders")
        assert r.returncode == 1 and why in r.stderr, r.stderr
    broken = tree["base"] / "users-broken"
    broken.write_text(text.replace(":/proposals/p1", ":proposals/p1"))
    r = adduser(broken, "carol")   # a bad line is named with its file and line number
    assert r.returncode == 1 and "users-broken:2: user 'alice': folder 'proposals/p1' must start with '/'" in r.stderr, r.stderr


def test_reads_only_inside_the_users_folders(server):
    with h5pyd.File("/proposals/p1/a.nxs", "r", endpoint=server.url, username="alice", password=PASSWORDS["alice"]) as f:
        assert f["entry/sample/name"][()] in (b"LaB6", "LaB6")
    refused = ["/proposals/p2/b.nxs", "/proposals/p2/nothing-here.nxs", "/proposals/p10/c.nxs", "/top.nxs",
               "/staff/calib.nxs", "/proposals/p1/link_to_b.nxs", "/proposals/p1/link_to_p2/b.nxs", "//proposals/./p2/b.nxs"]
    for domain in refused:
        r = get(server, "alice", "/", domain=domain)
        assert r.status_code == 403, (domain, r.text)
        assert "user 'alice' may not read it" in r.json()["error"], r.text
    # the same answer whether or not the file exists
    a = get(server, "alice", "/", domain="/proposals/p2/b.nxs").json()["error"]
    b = get(server, "alice", "/", domain="/proposals/p2/nothing-here.nxs").json()["error"]
    assert a.replace("b.nxs", "X") == b.replace("nothing-here.nxs", "X")
    with pytest.raises(Exception):
        h5pyd.File("/proposals/p2/b.nxs", "r", endpoint=server.url, username="alice", password=PASSWORDS["alice"])
    # bob reads his two folders; staff everything
    assert get(server, "bob", "/", domain="/staff/calib.nxs").status_code == 200
    assert get(server, "bob", "/", domain="/proposals/p1/a.nxs").status_code == 403
    for domain in ["/top.nxs", "/proposals/p10/c.nxs", "/proposals/p1/link_to_b.nxs"]:
        assert get(server, "staff", "/", domain=domain).status_code == 200, domain


def test_values_and_viewer_routes_refused_outside(server):
    root = get(server, "bob", "/", domain="/proposals/p2/b.nxs").json()["root"]
    r = get(server, "alice", f"/groups/{root}", domain="/proposals/p2/b.nxs")
    assert r.status_code == 403
    r = requests.post(server.url + f"/datasets/{root}/value", params={"domain": "/proposals/p2/b.nxs"},
                      json={"select": "[0:1]"}, auth=("alice", PASSWORDS["alice"]), timeout=60)
    assert r.status_code == 403
    for route in ["/nxlua/plot", "/nxlua/summary", "/nxlua/image", "/nxlua/watch"]:
        r = get(server, "alice", route, domain="/proposals/p2/b.nxs", path="/entry/data/frames")
        assert r.status_code == 403, (route, r.status_code, r.text[:200])
        r = get(server, "bob", route, domain="/proposals/p2/b.nxs", path="/entry/data/frames")
        assert r.status_code != 403, (route, r.text[:200])


def listing(server, who, folder):
    r = get(server, who, "/domains", domain=folder)
    assert r.status_code == 200, r.text
    return sorted(d["name"] for d in r.json()["domains"])


def test_folder_listings_show_the_way_and_nothing_else(server):
    assert listing(server, "alice", "/") == ["/proposals"]
    assert listing(server, "alice", "/proposals") == ["/proposals/p1"]
    assert listing(server, "alice", "/proposals/p1") == ["/proposals/p1/a.nxs"]   # the symlinks lead to p2
    assert listing(server, "bob", "/") == ["/proposals", "/staff"]
    assert listing(server, "bob", "/proposals") == ["/proposals/p2"]
    assert listing(server, "staff", "/proposals") == ["/proposals/p1", "/proposals/p10", "/proposals/p2"]
    assert get(server, "alice", "/domains", domain="/staff").status_code == 403


def catalog(server, who, **params):
    r = get(server, who, "/nxlua/catalog", **params)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_catalog_finds_and_counts_only_readable_files(server):
    found = catalog(server, "alice", q="sample:LaB6")
    assert [e["domain"] for e in found["entries"]] == ["/proposals/p1/a.nxs"]
    assert catalog(server, "alice", q="", count=1) == {"count": 1}
    assert catalog(server, "alice", q="", facets="sample")["facets"] == [{"value": "LaB6", "count": 1}]
    assert catalog(server, "bob", q="", count=1) == {"count": 2}
    assert sorted(f["value"] for f in catalog(server, "bob", q="", facets="sample")["facets"]) == ["CeO2", "LaB6"]
    assert catalog(server, "staff", q="", count=1) == {"count": 5}
    # p1 is not a prefix of p10, as a folder
    assert all("/p10/" not in e["domain"] for e in catalog(server, "alice", q="")["entries"])


def test_evaluations_open_only_readable_files(server):
    def evaluate(who, code):
        return requests.post(server.url + "/nxlua/eval", json={"code": code, "args": {}}, auth=(who, PASSWORDS[who]), timeout=120)
    r = evaluate("alice", "return nx.load('/proposals/p1/a.nxs').entry.sample.temperature:read()")
    assert r.status_code == 200 and r.json()["result"] == 100.0, r.text
    for domain in ["/proposals/p2/b.nxs", "/proposals/p1/link_to_b.nxs", "/top.nxs"]:
        r = evaluate("alice", f"return nx.load('{domain}').entry.sample.temperature:read()")
        assert r.status_code == 400 and "may not read it" in r.json()["error"], r.text
    r = evaluate("staff", "return nx.load('/top.nxs').entry.sample.temperature:read()")
    assert r.status_code == 200 and r.json()["result"] == 10.0


def test_anonymous_is_refused_next_to_limited_users(tree):
    r = subprocess.run([BIN, "serve", str(tree["root"]), "--port", "0", "--host", "127.0.0.1", "--users", str(tree["users"]),
                        "--allow-anonymous"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "limits users to folders" in r.stderr, r.stderr
