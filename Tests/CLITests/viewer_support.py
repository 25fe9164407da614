"""What the web viewer's tests share (test_viewer_http.py, test_viewer_browser.py): the
served files, the server, a headless Debian chromium driven by Selenium, and the
screenshot and console log a failing browser test leaves behind."""
import functools
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import h5py
import numpy as np

from conftest import BIN
from test_serve import PASSWORD, USER, Server

HOSTILE = "<img src=x onerror=alert(1)>"
SHAPE = (5, 40, 48)
REAL_CBF = pathlib.Path("/work/shared/data/cbf/fit2d_data.cbf")


def stack_frames():
    """Frame i: a ramp plus 1000 * i, with Pilatus-style gaps (-1) in a column band and
    one dead pixel (-2)."""
    f = np.zeros(SHAPE, dtype="i4")
    rows, cols = np.indices(SHAPE[1:])
    for i in range(SHAPE[0]):
        f[i] = rows * 7 + cols * 3 + 1000 * i
    f[:, :, 20:22] = -1
    f[:, 5, 7] = -2
    return f


def make_stack(path):
    """A NeXus file as NeXpy opens it: @default chain to an NXdata with axes and units."""
    with h5py.File(path, "w") as f:
        f.attrs["NX_class"] = "NXroot"
        f.attrs["default"] = "entry"
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        e.attrs["default"] = "data"
        e["title"] = "rotation scan"
        d = e.create_group("data")
        d.attrs["NX_class"] = "NXdata"
        d.attrs["signal"] = "counts"
        d.attrs["axes"] = np.array(["omega", "y", "x"], dtype=h5py.string_dtype())
        c = d.create_dataset("counts", data=stack_frames(), chunks=(1,) + SHAPE[1:], compression="gzip")
        c.attrs["units"] = "counts"
        c.attrs["long_name"] = "Pilatus counts"
        d["omega"] = np.linspace(10, 12, SHAPE[0])
        d["omega"].attrs["units"] = "degree"
        d["y"] = np.arange(SHAPE[1]) * 0.172
        d["y"].attrs["units"] = "mm"
        d["x"] = np.arange(SHAPE[2]) * 0.172
        d["x"].attrs["units"] = "mm"
        e["counts_link"] = h5py.SoftLink("/entry/data/counts")


def make_spectrum(path):
    with h5py.File(path, "w") as f:
        f.attrs["default"] = "entry"
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        e.attrs["default"] = "spectrum"
        d = e.create_group("spectrum")
        d.attrs["NX_class"] = "NXdata"
        d.attrs["signal"] = "intensity"
        d.attrs["axes"] = "energy"
        d["energy"] = np.linspace(1, 20, 40)
        d["energy"].attrs["units"] = "keV"
        d["intensity"] = (np.linspace(1, 20, 40) ** 2).astype("f8")
        d["intensity_errors"] = np.sqrt(np.linspace(1, 20, 40) ** 2)


def make_hostile(path):
    with h5py.File(path, "w") as f:
        f.attrs["default"] = "entry"
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        e.attrs[HOSTILE] = HOSTILE
        e["title"] = HOSTILE   # shown in catalog search results too
        g = e.create_group(HOSTILE)
        g.attrs[HOSTILE] = "<script>alert(2)</script>"
        g[HOSTILE] = np.arange(4)


def served_folder(base):
    """The folder tests serve: the stack, a spectrum, a stack nxlua made from the real
    CBF in /work/shared/data, a hostile file, a subfolder and an escape that stays shut."""
    root = base / "data"
    (root / "sub").mkdir(parents=True)
    make_stack(root / "scan.nxs")
    make_spectrum(root / "sub" / "spectrum.nxs")
    make_hostile(root / (HOSTILE + ".nxs"))
    outside = base / "outside"
    outside.mkdir()
    make_stack(outside / "secret.nxs")
    os.symlink(outside / "secret.nxs", root / "escape.nxs")
    with h5py.File(root / "external.nxs", "w") as f:  # links out of the folder: never followed
        f.attrs["default"] = "entry"
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        d = e.create_group("data")
        d.attrs["NX_class"] = "NXdata"
        d.attrs["signal"] = "counts"
        d["counts"] = h5py.ExternalLink(str(outside / "secret.nxs"), "/entry/data/counts")
        e["elsewhere"] = h5py.ExternalLink(str(outside / "secret.nxs"), "/entry")
        e["via_soft"] = h5py.SoftLink("/entry/elsewhere/data/counts")
    frames = base / "cbf"
    frames.mkdir()
    shutil.copy(REAL_CBF, frames / "fit2d_00001.cbf")
    r = subprocess.run([BIN, "stack", str(frames / "fit2d_00001.cbf"), "--out", str(root / "fit2d.nxs"), "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    users = base / "users"
    r = subprocess.run([BIN, "serve", "adduser", str(users), USER], input=PASSWORD + "\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return root, users


# An h5py SWMR writer of an NXdata stack: frame i holds 100 * (i + 1) everywhere; it writes
# frame i once the go file holds a number > i (the test says when), and stops at "stop".
GROWING = textwrap.dedent("""
    import os, sys, time, h5py, numpy as np
    path, go, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
    f = h5py.File(path, "w", libver="latest")
    f.attrs["default"] = "entry"
    e = f.create_group("entry"); e.attrs["NX_class"] = "NXentry"; e.attrs["default"] = "data"
    g = e.create_group("data"); g.attrs["NX_class"] = "NXdata"; g.attrs["signal"] = "frames"
    d = g.create_dataset("frames", shape=(0, 24, 32), maxshape=(None, 24, 32), dtype="i4", chunks=(1, 24, 32))
    f.swmr_mode = True
    def allowed():
        text = open(go).read().strip() if os.path.exists(go) else "0"
        return total if text == "stop" else int(text or 0)
    for i in range(total):
        while allowed() < i + 1:
            time.sleep(0.01)
        if open(go).read().strip() == "stop":
            break
        d.resize((i + 1, 24, 32))
        frame = np.full((24, 32), 100 * (i + 1), dtype="i4")
        frame[0, 0] = 0
        d[i] = frame
        d.flush()
        print(i + 1, flush=True)
    f.close()
""")


def start_writer(base, path, go, total):
    script = base / "growing_nxdata.py"
    script.write_text(GROWING)
    return subprocess.Popen([sys.executable, str(script), str(path), str(go), str(total)],
                            stdout=subprocess.PIPE, text=True)


def release(go, count):
    tmp = go.with_suffix(".tmp")
    tmp.write_text(str(count))
    tmp.rename(go)


# -- the browser --

def make_driver(downloads=None):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
              "--force-device-scale-factor=1", "--force-color-profile=srgb", "--disable-extensions", "--no-first-run"):
        o.add_argument(a)
    profile = tempfile.mkdtemp(prefix="nxlua-chromium-")
    o.add_argument(f"--user-data-dir={profile}")
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if downloads:
        o.add_experimental_option("prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    driver.nxlua_profile = profile  # removed by quit_driver
    return driver


def quit_driver(driver):
    """Ends the browser and removes its profile folder."""
    try:
        driver.quit()
    finally:
        shutil.rmtree(driver.nxlua_profile, ignore_errors=True)


def console_errors(driver, allowed=()):
    """Console messages of level SEVERE (JavaScript errors, failed loads) not allowed."""
    out = []
    for entry in driver.get_log("browser"):
        if entry["level"] != "SEVERE":
            continue
        if any(a in entry["message"] for a in allowed):
            continue
        out.append(entry["message"])
    return out


ARTIFACTS = pathlib.Path(tempfile.gettempdir()) / "nxlua-viewer-failures"


def browser_test(allowed_console=()):
    """Wraps a test taking a `browser` fixture: the console must stay free of errors;
    on failure a screenshot and the console log are saved and their paths printed."""
    def wrap(test):
        @functools.wraps(test)
        def run(*args, **kwargs):
            driver = kwargs["browser"].driver
            logs = []
            try:
                test(*args, **kwargs)
                logs = driver.get_log("browser")
                bad = [e["message"] for e in logs if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed_console)]
                assert not bad, f"errors in the browser console: {bad}"
            except BaseException as e:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                stem = ARTIFACTS / f"{test.__name__}-{os.getpid()}-{int(time.time())}"
                shot = stem.with_suffix(".png")
                log = stem.with_suffix(".console.txt")
                try:
                    driver.save_screenshot(str(shot))
                    logs = logs or driver.get_log("browser")
                except Exception as why:  # the browser itself may be gone
                    logs = logs or [{"level": "?", "message": f"(no log: {why})"}]
                log.write_text("".join(f"{x['level']} {x['message']}\n" for x in logs) + f"URL: {safe_url(driver)}\n")
                raise AssertionError(f"{e}\n  screenshot: {shot}\n  console log: {log}") from e
        return run
    return wrap


def safe_url(driver):
    try:
        return driver.current_url
    except Exception:
        return "?"
