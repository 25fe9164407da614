"""The web viewer's server side over plain HTTP (no browser): the page and its
Content-Security-Policy, login sessions (cookie flags, logout, CSRF rules), the /nxlua/
extension routes (PNG frames checked pixel for pixel against numpy + matplotlib, frames
as colormap table indices against those PNGs, the max-preserving reduction, ROI statistics, the change stream) and hostile requests."""
import io
import re
import threading
import time

import h5py
import matplotlib
import numpy as np
import pytest
import requests
from PIL import Image

from test_serve import PASSWORD, USER, Server
from viewer_support import HOSTILE, make_stack, served_folder, stack_frames

VIEWER = {"X-NXLua-Viewer": "1"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("viewer_http")
    root, users = served_folder(base)
    with h5py.File(root / "hot.nxs", "w") as f:
        img = np.zeros((400, 400), dtype="f8")
        img[123, 321] = 50.0
        f["image"] = img
    s = Server(root, users, "--max-request-size", str(1 << 20), log=base / "serve.log")
    yield {"root": root, "base": base, "server": s, "url": s.url, "users": users}
    assert s.stop() == 0


def login(url):
    s = requests.Session()
    r = s.post(url + "/nxlua/login", json={"user": USER, "password": PASSWORD}, headers=VIEWER, timeout=60)
    assert r.status_code == 200, r.text
    return s, r


def expected_rgb(values, vmin, vmax, scale="linear", cmap="viridis"):
    """matplotlib's colours for values (NaN: the bad colour), as nxlua's Plot maps them."""
    table = matplotlib.colormaps[cmap](np.arange(256), bytes=True)[:, :3]
    v = np.asarray(values, dtype="f8")
    with np.errstate(all="ignore"):
        if scale == "log":
            x = (np.log10(v) - np.log10(vmin)) / (np.log10(vmax) - np.log10(vmin))
        else:
            x = (v - vmin) / (vmax - vmin)
    idx = np.clip(np.floor(np.nan_to_num(x, nan=0) * 256), 0, 255).astype(int)
    idx[np.nan_to_num(x, nan=0) >= 1] = 255
    out = table[idx]
    out[np.isnan(x)] = (211, 211, 211)
    return out


def test_the_page_is_served_to_browsers_with_a_strict_policy_and_rest_clients_see_no_change(site):
    url = site["url"]
    r = requests.get(url + "/", headers={"Accept": "text/html,application/xhtml+xml"}, timeout=60)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "default-src 'none'" in csp and "style-src 'self';" in csp
    assert [d for d in csp.split(";") if "unsafe" in d] == [" style-src-attr 'unsafe-inline'"]  # dygraphs' legend
    assert "frame-ancestors 'none'" in csp and r.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script" in r.text and not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", r.text), "inline script in the page"
    # HDF REST clients: the folder JSON (with credentials), the domain JSON, as before
    j = requests.get(url + "/", auth=(USER, PASSWORD), timeout=60).json()
    assert j["class"] == "folder"
    d = requests.get(url + "/", params={"domain": "/scan.nxs"}, auth=(USER, PASSWORD), headers={"Accept": "text/html"}, timeout=60)
    assert d.headers["Content-Type"].startswith("application/json") and d.json()["class"] == "domain"
    assert requests.get(url + "/", timeout=60).status_code == 401  # no page for a client that asks for JSON
    for name, kind in [("app.js", "text/javascript"), ("viewer.css", "text/css"), ("image.js", "text/javascript")]:
        a = requests.get(url + "/nxlua/static/" + name, timeout=60)
        assert a.status_code == 200 and a.headers["Content-Type"].startswith(kind), name
        assert "Content-Security-Policy" in a.headers
    lib = requests.get(url + "/nxlua/lib/dygraph.min.js", timeout=60)
    assert lib.status_code == 200 and "Dygraph" in lib.text
    for bad in ["/nxlua/static/../Server.swift", "/nxlua/static/%2e%2e%2fPackage.swift", "/nxlua/lib/..%2f..%2f..%2fetc%2fpasswd",
                "/nxlua/lib/dygraph.js.map", "/nxlua/static/", "/nxlua/static/nope.js"]:
        r = requests.get(url + bad, timeout=60)  # (a client may fold ".." away: then no viewer route, 401)
        assert r.status_code in (401, 404) and r.headers["Content-Type"].startswith("application/json"), bad


def test_login_sets_a_strict_http_only_cookie_without_the_password_and_logout_ends_it(site):
    url = site["url"]
    r = requests.post(url + "/nxlua/login", json={"user": USER, "password": "wrong"}, headers=VIEWER, timeout=60)
    assert r.status_code == 401 and "WWW-Authenticate" not in r.headers  # no browser password dialog
    r = requests.post(url + "/nxlua/login", data={"user": "nobody", "password": PASSWORD}, headers=VIEWER, timeout=60)
    assert r.status_code == 401
    # a cross-site form cannot add the viewer's header: refused before any password check
    r = requests.post(url + "/nxlua/login", data={"user": USER, "password": PASSWORD}, timeout=60)
    assert r.status_code == 403 and "Set-Cookie" not in r.headers
    # anonymous login is refused without --allow-anonymous
    assert requests.post(url + "/nxlua/login", json={}, headers=VIEWER, timeout=60).status_code == 401
    s, r = login(url)
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=28800" in cookie and "Path=/" in cookie
    token = s.cookies["nxlua_session"]
    assert PASSWORD not in cookie and USER not in cookie and len(token) == 64
    who = s.get(url + "/nxlua/session", timeout=60).json()
    assert who["authenticated"] and who["user"] == USER and "viridis" in who["colormaps"]
    assert s.get(url + "/nxlua/plot", params={"domain": "/scan.nxs"}, timeout=60).status_code == 200
    assert s.get(url + "/domains", params={"domain": "/"}, timeout=60).status_code == 200  # REST routes too
    # GETs change nothing: no logout, no login by GET
    assert s.get(url + "/nxlua/logout", timeout=60).status_code in (404, 405)
    assert requests.get(url + "/nxlua/login", params={"user": USER, "password": PASSWORD}, timeout=60).status_code in (401, 404, 405)
    assert s.get(url + "/nxlua/session", timeout=60).json()["authenticated"]
    # a cookie-authenticated POST needs the viewer's header; events and eval take Basic only
    sel = {"select": "[0:1,0:1,0:1]"}
    ds = dataset_id(s, url, "/scan.nxs", "/entry/data/counts")
    assert s.post(f"{url}/datasets/{ds}/value", params={"domain": "/scan.nxs"}, json=sel, timeout=60).status_code == 403
    assert s.post(f"{url}/datasets/{ds}/value", params={"domain": "/scan.nxs"}, json=sel, headers=VIEWER, timeout=60).status_code == 200
    assert s.post(url + "/nxlua/events", json={"kind": "start"}, headers=VIEWER, timeout=60).status_code == 403
    assert s.post(url + "/nxlua/eval", json={"code": "return 1"}, headers=VIEWER, timeout=60).status_code == 403
    # logout: the token is dead even if someone kept it
    out = s.post(url + "/nxlua/logout", headers=VIEWER, timeout=60)
    assert out.status_code == 200 and "Max-Age=0" in out.headers["Set-Cookie"]
    stale = requests.get(url + "/nxlua/plot", params={"domain": "/scan.nxs"}, cookies={"nxlua_session": token}, timeout=60)
    assert stale.status_code == 401
    assert not requests.get(url + "/nxlua/session", cookies={"nxlua_session": token}, timeout=60).json()["authenticated"]
    forged = requests.get(url + "/nxlua/plot", params={"domain": "/scan.nxs"}, cookies={"nxlua_session": "0" * 64}, timeout=60)
    assert forged.status_code == 401


def dataset_id(s, url, domain, path):
    j = s.get(url + "/", params={"domain": domain, "getobjs": 1}, timeout=60).json()
    objs = j["domain_objs"]
    node = objs[j["root"]]
    for part in path.strip("/").split("/"):
        node_id = node["links"][part]["id"]
        node = objs[node_id]
    return node_id


def test_the_new_routes_need_credentials_and_stay_inside_the_folder(site):
    url = site["url"]
    q = {"domain": "/scan.nxs", "path": "/entry/data/counts"}
    for route in ["plot", "image", "stats", "watch"]:
        assert requests.get(f"{url}/nxlua/{route}", params=q, timeout=60).status_code == 401, route
    s, _ = login(url)
    bad = [
        ({"domain": "/../outside/secret.nxs", "path": "/entry/data/counts"}, 403),
        ({"domain": "/escape.nxs", "path": "/entry/data/counts"}, 403),
        ({"domain": "/missing.nxs", "path": "/x"}, 404),
        ({"domain": "/sub/", "path": "/x"}, 400),
        ({"domain": "/scan.nxs", "path": "/entry/../../../etc"}, 404),
        ({"domain": "/scan.nxs", "path": "entry/data/counts"}, 400),
        ({"domain": "/scan.nxs", "path": "/entry/data/counts", "frame": "99"}, 400),
        ({"domain": "/scan.nxs", "path": "/entry/data/counts", "frame": "-1"}, 400),
        ({"domain": "/scan.nxs", "path": "/entry/data/counts", "frame": "1,2"}, 400),
        ({"domain": "/scan.nxs", "path": "/entry/data/counts", "sum": "3:1"}, 400),
        ({"domain": "/scan.nxs", "path": "/entry/data/counts", "sum": "0:99"}, 400),
        ({"domain": "/scan.nxs", "path": "/entry/data/counts", "mask": "/entry/data/omega"}, 400),
        ({"domain": "/scan.nxs", "path": "/entry/data/omega"}, 400),
        ({"domain": "/scan.nxs", "path": "/entry/data"}, 400),
        ({"domain": "/scan.nxs", "path": "/entry/data/counts", "cmap": "<script>"}, 400),
        ({"domain": "/scan.nxs", "path": "/entry/data/counts", "scale": "cubic"}, 400),
        ({"domain": "/scan.nxs", "path": "/entry/data/counts", "width": "100000"}, 400),
        ({"domain": "/scan.nxs", "path": "/entry/data/counts", "vmin": "nan"}, 400),
        ({"domain": "/scan.nxs", "path": "/entry/data/counts", "x0": "5", "x1": "5"}, 400),
        ({"domain": "/scan.nxs", "path": "/entry/data/counts", "autoscale": "50,10"}, 400),
    ]
    for params, status in bad:
        r = s.get(url + "/nxlua/image", params=params, timeout=60)
        assert r.status_code == status, (params, r.status_code, r.text)
        assert "error" in r.json()
    raw = s.get(url + "/nxlua/image?domain=/%2e%2e/outside/secret.nxs&path=/entry/data/counts", timeout=60)
    assert raw.status_code == 403, raw.text
    # external links lead anywhere on the server's disks: never followed (as by the API)
    for path in ["/entry/data/counts", "/entry/elsewhere/data/counts", "/entry/via_soft"]:
        for route in ["image", "stats", "summary"]:
            r = s.get(f"{url}/nxlua/{route}", params={"domain": "/external.nxs", "path": path}, timeout=60)
            assert r.status_code == 403 and "external link" in r.json()["error"], (route, path, r.text)
    p = s.get(url + "/nxlua/plot", params={"domain": "/external.nxs"}, timeout=60)
    assert p.status_code == 200 and p.json()["signal"] is None
    assert s.get(url + "/nxlua/plot", params={"domain": "/external.nxs", "path": "/entry/via_soft"}, timeout=60).status_code == 403
    # the watch route: same checks
    assert s.get(url + "/nxlua/watch", params={"domain": "/../outside/secret.nxs"}, timeout=60).status_code == 403
    assert s.get(url + "/nxlua/watch", params={"domain": "/sub/"}, timeout=60).status_code == 400
    assert s.get(url + "/nxlua/plot", params={"domain": "/escape.nxs"}, timeout=60).status_code == 403
    # size limit as the API: a 400x400 float64 image is 1.28 MB, above this server's 1 MiB
    assert s.get(url + "/nxlua/image", params={"domain": "/hot.nxs", "path": "/image"}, timeout=60).status_code == 413
    # hostile names arrive as JSON strings, never interpreted
    r = s.get(url + "/nxlua/plot", params={"domain": f"/{HOSTILE}.nxs", "path": f"/entry/{HOSTILE}/{HOSTILE}"}, timeout=60)
    assert r.status_code == 200 and r.json()["signal"]["path"] == f"/entry/{HOSTILE}/{HOSTILE}"


def test_anonymous_viewers_only_with_allow_anonymous(site, tmp_path):
    s = Server(site["root"], None, "--allow-anonymous", log=tmp_path / "anon.log")
    try:
        who = requests.get(s.url + "/nxlua/session", timeout=60).json()
        assert who["authenticated"] and who["anonymous"]
        r = requests.get(s.url + "/nxlua/image", params={"domain": "/scan.nxs", "path": "/entry/data/counts"}, timeout=60)
        assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
    finally:
        assert s.stop() == 0
    who = requests.get(site["url"] + "/nxlua/session", timeout=60).json()
    assert who == {"authenticated": False, "user": None, "reason": who["reason"]}


def test_plot_description_follows_the_nexus_rules(site):
    s, _ = login(site["url"])
    p = s.get(site["url"] + "/nxlua/plot", params={"domain": "/scan.nxs"}, timeout=60).json()
    assert p["group"] == "/entry/data" and p["signal"]["path"] == "/entry/data/counts"
    assert p["signal"]["shape"] == list(SHAPE_3D) and p["signal"]["dtype"] == "int32" and p["signal"]["label"] == "Pilatus counts"
    assert [a["path"] for a in p["axes"]] == ["/entry/data/omega", "/entry/data/y", "/entry/data/x"]
    assert p["axes"][1]["label"] == "y (mm)" and p["counts"] is True and p["title"] == "rotation scan"
    sp = s.get(site["url"] + "/nxlua/plot", params={"domain": "/sub/spectrum.nxs"}, timeout=60).json()
    assert sp["errors"] == "/entry/spectrum/intensity_errors" and sp["axes"][0]["units"] == "keV"
    real = s.get(site["url"] + "/nxlua/plot", params={"domain": "/fit2d.nxs"}, timeout=60).json()
    assert real["signal"]["shape"] == [1, 236, 263]


SHAPE_3D = (5, 40, 48)


def decode(png):
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@pytest.mark.parametrize("scale", ["linear", "log"])
def test_a_frame_png_matches_numpy_and_matplotlib_pixel_for_pixel(site, scale):
    s, _ = login(site["url"])
    frames = stack_frames()
    r = s.get(site["url"] + "/nxlua/image", params={"domain": "/scan.nxs", "path": "/entry/data/counts", "frame": 2,
                                                    "scale": scale, "width": 800, "height": 800, "origin": "upper"}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["X-NXLua-Shape"] == "40,48" and r.headers["X-NXLua-Frames"] == "5"
    rgb = decode(r.content)
    assert rgb.shape == (40, 48, 3)  # never more pixels than the frame has
    frame = frames[2].astype("f8")
    frame[frames[2] < 0] = np.nan  # Pilatus gaps and dead pixels are masked
    ok = frame[~np.isnan(frame)]
    if scale == "log":
        ok = ok[ok > 0]
    vmin, vmax = np.percentile(ok, [0.5, 99.5])
    lo, hi = map(float, r.headers["X-NXLua-Limits"].split(","))
    assert lo == pytest.approx(vmin) and hi == pytest.approx(vmax)
    np.testing.assert_array_equal(rgb, expected_rgb(frame, vmin, vmax, scale))
    # origin lower (the default, as figures): the same picture upside down
    low = decode(s.get(site["url"] + "/nxlua/image", params={"domain": "/scan.nxs", "path": "/entry/data/counts", "frame": 2,
                                                             "scale": scale}, timeout=60).content)
    np.testing.assert_array_equal(low, rgb[::-1])


def test_big_frames_are_reduced_on_the_server_keeping_the_maximum(site, tmp_path):
    s = Server(site["root"], site["users"], log=tmp_path / "big.log")
    try:
        sess, _ = login(s.url)
        r = sess.get(s.url + "/nxlua/image", params={"domain": "/hot.nxs", "path": "/image", "width": 50, "height": 50,
                                                     "origin": "upper", "autoscale": "minmax"}, timeout=60)
        assert r.status_code == 200
        rgb = decode(r.content)
        assert rgb.shape == (50, 50, 3) and len(r.content) < 5000
        top = tuple(matplotlib.colormaps["viridis"](255, bytes=True)[:3])
        hot = np.argwhere((rgb == top).all(axis=2))
        assert hot.tolist() == [[123 * 50 // 400, 321 * 50 // 400]]  # the single hot pixel survives 8x8 reduction
        # a window (zoom) at full resolution
        w = decode(sess.get(s.url + "/nxlua/image", params={"domain": "/hot.nxs", "path": "/image", "x0": 300.5, "x1": 340.5,
                                                            "y0": 100.5, "y1": 130.5, "origin": "upper", "autoscale": "minmax"},
                            timeout=60).content)
        assert w.shape == (30, 40, 3) and (w[123 - 101, 321 - 301] == top).all()
    finally:
        assert s.stop() == 0


def colour_indices(r, table):
    """An image sent as colormap table indices (format=indices), coloured as the viewer's
    canvas code colours it: the table's colour of each index, the bad colour (entry 256)
    where the mask's bit is set."""
    w, h = map(int, r.headers["X-NXLua-Size"].split(","))
    body = np.frombuffer(r.content, dtype="u1")  # requests undoes the gzip
    masked = int(r.headers["X-NXLua-Masked"])
    assert body.size == w * h + ((w * h + 7) // 8 if masked else 0)
    rgb = table[body[:w * h].astype(int)].reshape(h, w, 3)
    if masked:
        bits = np.unpackbits(body[w * h:], bitorder="little")[:w * h].astype(bool).reshape(h, w)
        assert bits.sum() == masked
        rgb[bits] = table[256]
    return rgb


@pytest.mark.parametrize("cmap", ["viridis", "inferno_r"])
def test_frames_as_table_indices_are_the_png_pixel_for_pixel(site, tmp_path, cmap):
    s, _ = login(site["url"])
    table = s.get(site["url"] + "/nxlua/colormap", params={"cmap": cmap}, timeout=60)
    assert table.status_code == 200 and table.headers["Content-Type"] == "application/octet-stream"
    rgba = np.frombuffer(table.content, dtype="u1").reshape(257, 4)
    np.testing.assert_array_equal(rgba[:256], matplotlib.colormaps[cmap](np.arange(256), bytes=True))
    assert rgba[256].tolist() == [211, 211, 211, 255]  # lightgray: masked pixels
    table = rgba[:, :3]
    q = {"domain": "/scan.nxs", "path": "/entry/data/counts", "cmap": cmap}
    cases = [{"frame": 2}, {"frame": 1, "scale": "log", "origin": "upper"}, {"sum": "1:4", "scale": "sqrt"},
             {"frame": 3, "width": 17, "height": 11},                                       # reduced (max-preserving)
             {"frame": 0, "x0": 10.5, "x1": 30.5, "y0": -5.5, "y1": 12.5, "width": 300, "height": 300},  # a window past the edge
             {"frame": 4, "vmin": 1500, "vmax": 4000, "autoscale": ""}]
    for case in cases:
        params = dict(q, **case)
        png = s.get(site["url"] + "/nxlua/image", params=params, timeout=60)
        idx = s.get(site["url"] + "/nxlua/image", params=dict(params, format="indices"), timeout=60)
        assert png.status_code == 200 and idx.status_code == 200, (case, idx.text)
        assert idx.headers["Content-Type"] == "application/octet-stream" and idx.headers.get("Content-Encoding") == "gzip"
        for h in ["X-NXLua-Limits", "X-NXLua-Shape", "X-NXLua-Frames"]:
            assert idx.headers[h] == png.headers[h], (case, h)
        want = decode(png.content)
        assert idx.headers["X-NXLua-Size"] == f"{want.shape[1]},{want.shape[0]}"
        np.testing.assert_array_equal(colour_indices(idx, table), want, err_msg=str(case))
    # the gap columns are masked: their bits are set
    r = s.get(site["url"] + "/nxlua/image", params=dict(q, frame=2, format="indices"), timeout=60)
    assert int(r.headers["X-NXLua-Masked"]) == (stack_frames()[2] < 0).sum()
    # a frame with nothing masked sends no mask; without gzip in Accept-Encoding, plain bytes
    hot = requests.get(site["url"] + "/nxlua/image", params={"domain": "/hot.nxs", "path": "/image", "format": "indices",
                                                            "width": 50, "height": 50, "autoscale": "minmax"},
                       headers={"Accept-Encoding": "identity"}, cookies=s.cookies, timeout=60)
    assert hot.status_code == 413  # this server's 1 MiB limit, as for PNGs
    sb = Server(site["root"], site["users"], log=tmp_path / "indices.log")
    try:
        sess, _ = login(sb.url)
        hot = sess.get(sb.url + "/nxlua/image", params={"domain": "/hot.nxs", "path": "/image", "format": "indices",
                                                        "width": 50, "height": 50, "autoscale": "minmax", "origin": "upper"},
                       headers={"Accept-Encoding": "identity"}, timeout=60)
        assert hot.status_code == 200 and "Content-Encoding" not in hot.headers
        assert hot.headers["X-NXLua-Masked"] == "0" and len(hot.content) == 2500
        assert np.argwhere(np.frombuffer(hot.content, dtype="u1").reshape(50, 50) == 255).tolist() == [[123 * 50 // 400, 321 * 50 // 400]]
    finally:
        assert sb.stop() == 0
    for bad in [{"format": "jpeg"}, {"format": "indices", "cmap": "nope"}]:
        r = s.get(site["url"] + "/nxlua/image", params=dict(q, **bad), timeout=60)
        assert r.status_code == 400 and "error" in r.json(), bad
    assert s.get(site["url"] + "/nxlua/colormap", params={"cmap": "nope"}, timeout=60).status_code == 400
    assert requests.get(site["url"] + "/nxlua/colormap", params={"cmap": cmap}, timeout=60).status_code == 401


def test_roi_statistics_match_numpy_with_masked_pixels_counted(site):
    s, _ = login(site["url"])
    frames = stack_frames()
    q = {"domain": "/scan.nxs", "path": "/entry/data/counts", "frame": 3, "rows": "2:30", "cols": "4:25"}
    st = s.get(site["url"] + "/nxlua/stats", params=q, timeout=60).json()
    box = frames[3, 2:30, 4:25]
    good = box[box >= 0]
    assert st["sum"] == good.sum() and st["count"] == good.size and st["masked"] == (box < 0).sum() > 0
    assert st["min"] == good.min() and st["max"] == good.max() and st["mean"] == pytest.approx(good.mean())
    # a frame range added up (the sum projection)
    st = s.get(site["url"] + "/nxlua/stats", params={"domain": "/scan.nxs", "path": "/entry/data/counts", "sum": "1:4"}, timeout=60).json()
    summed = frames[1:4].astype("i8").sum(axis=0)
    assert st["sum"] == summed[summed >= 0].sum() and st["masked"] == (summed < 0).sum()


def test_the_change_stream_announces_a_growing_file(site):
    s, _ = login(site["url"])
    path = site["root"] / "growing.nxs"
    make_stack(path)
    events = []
    done = threading.Event()

    def listen():
        with s.get(site["url"] + "/nxlua/watch", params={"domain": "/growing.nxs"}, stream=True, timeout=60) as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            for line in r.iter_lines(decode_unicode=True):
                if line.startswith("data:"):
                    events.append(line)
                    if len(events) == 2:
                        break
        done.set()

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    deadline = time.time() + 30
    while not events and time.time() < deadline:
        time.sleep(0.05)
    assert events, "no first event"
    with h5py.File(path, "a") as f:
        f["entry/extra"] = np.arange(100000)
    assert done.wait(30), events
    assert '"size"' in events[1] and events[0] != events[1]


def test_field_summaries_and_the_colour_bar(site):
    s, _ = login(site["url"])
    frames = stack_frames()
    j = s.get(site["url"] + "/nxlua/summary", params={"domain": "/scan.nxs", "path": "/entry/data/counts"}, timeout=60).json()
    assert (j["min"], j["max"], j["count"], j["dtype"]) == (frames.min(), frames.max(), frames.size, "int32")
    assert j["mean"] == pytest.approx(frames.mean())
    assert s.get(site["url"] + "/nxlua/summary", params={"domain": "/scan.nxs", "path": "/entry/title"}, timeout=60).status_code == 400
    assert s.get(site["url"] + "/nxlua/summary", params={"domain": "/scan.nxs", "path": "/entry"}, timeout=60).status_code == 400
    for name in ["viridis", "inferno_r", "RdBu"]:
        r = s.get(site["url"] + "/nxlua/colorbar", params={"cmap": name}, timeout=60)
        assert r.status_code == 200
        rgb = decode(r.content)
        assert rgb.shape == (1, 256, 3)
        np.testing.assert_array_equal(rgb[0], matplotlib.colormaps[name](np.arange(256), bytes=True)[:, :3])
    assert s.get(site["url"] + "/nxlua/colorbar", params={"cmap": "nope"}, timeout=60).status_code == 400


def test_failed_logins_are_limited_per_minute(site, tmp_path):
    s = Server(site["root"], site["users"], log=tmp_path / "limit.log")
    try:
        def attempt(_):
            return requests.post(s.url + "/nxlua/login", json={"user": USER, "password": "guess"}, headers=VIEWER, timeout=120).status_code
        import concurrent.futures
        minute = time.time() // 60
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(attempt, range(24)))
        assert codes.count(401) >= 20 and set(codes) <= {401, 429}
        if time.time() // 60 == minute:
            assert codes.count(429) >= 1  # at most 3 other guesses are in flight when the last one arrives
        # the allowance is used up: even the right password waits for the next minute
        # (unless the minute just turned; then it logs in)
        r = requests.post(s.url + "/nxlua/login", json={"user": USER, "password": PASSWORD}, headers=VIEWER, timeout=120)
        assert r.status_code in (200, 429)
        if r.status_code == 429:
            assert "wait a minute" in r.json()["error"]
    finally:
        assert s.stop() == 0
