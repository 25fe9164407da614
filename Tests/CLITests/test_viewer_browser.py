"""The web viewer in a real browser: Debian's headless chromium driven by Selenium
(chromium-driver). Each test logs in, works the page as a user does, and checks what it
shows against the files read with h5py and colours computed with numpy + matplotlib. No
test may leave an error in the browser console; a failing one saves a screenshot and the
console log and prints their paths. NXLUA_VIEWER_SCREENSHOTS=DIR writes the pictures of
docs/viewer.md there."""
import os
import pathlib
import shutil
import subprocess
import time
import urllib.parse

import h5py
import hdf5plugin  # noqa: F401  (bitshuffle for the stack nxlua wrote)
import numpy as np
import pytest

from conftest import BIN
from test_serve import PASSWORD, USER, Server
from test_viewer_http import expected_rgb
from viewer_support import (HOSTILE, browser_test, make_driver, quit_driver, release, served_folder, stack_frames,
                            start_writer)

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

if not (shutil.which("chromium") and pathlib.Path("/usr/bin/chromedriver").exists()):
    pytest.skip("chromium and chromium-driver are not installed (scripts/setup installs them)", allow_module_level=True)

SCREENSHOTS = os.environ.get("NXLUA_VIEWER_SCREENSHOTS")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("viewer_browser")
    root, users = served_folder(base)
    # a catalog of the served folder: the search box (docs/viewer.md, "Search")
    db = base / "catalog.sqlite"
    subprocess.run([BIN, "catalog", "add", str(root), "--catalog", str(db)], check=True, capture_output=True, timeout=300)
    s = Server(root, users, "--catalog", str(db), log=base / "serve.log")
    yield {"root": root, "base": base, "server": s, "url": s.url}
    assert s.stop() == 0


class Browser:
    def __init__(self, url, downloads=None):
        self.url = url
        self.downloads = downloads
        self.driver = make_driver(downloads)

    def wait(self, condition, timeout=30, what="the page"):
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(lambda d: condition(d), f"waiting for {what}")

    def find(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def js(self, code, *args):
        return self.driver.execute_script(code, *args)

    def open(self, hash_=""):
        self.driver.get(self.url + "/" + hash_)

    def login(self, password=PASSWORD):
        self.wait(lambda d: self.find("#login").is_displayed(), what="the login form")
        self.find("#user").clear()
        self.find("#user").send_keys(USER)
        self.find("#password").clear()
        self.find("#password").send_keys(password)
        self.find("#login-button").click()

    def painted(self, count=1, frame=None):
        """Waits until the image canvas has been painted `count` times (and shows `frame`)."""
        def ok(_):
            c = self.js("const c = document.getElementById('image'); return c ? [c.dataset.painted || '0', c.dataset.frame || ''] : null")
            return c and int(c[0]) >= count and (frame is None or c[1] == str(frame))
        self.wait(ok, what=f"paint {count} of frame {frame}")

    def pixels(self, points):
        return self.js("""const g = document.getElementById('image').getContext('2d');
            return arguments[0].map(([x, y]) => Array.from(g.getImageData(x, y, 1, 1).data).slice(0, 3));""", points)

    def canvas_size(self):
        return self.js("const c = document.getElementById('image'); return [c.width, c.height]")

    def screenshot(self, name):
        if SCREENSHOTS:
            from PIL import Image
            pathlib.Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            path = pathlib.Path(SCREENSHOTS) / name
            self.driver.save_screenshot(str(path))
            # 128 colours: a tenth of the bytes, the same look for a page of text and a colormap
            Image.open(path).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)

    def close(self):
        quit_driver(self.driver)


@pytest.fixture
def browser(site, tmp_path):
    b = Browser(site["url"], downloads=tmp_path / "downloads")
    yield b
    b.close()


def centres(rows, cols, width, height, picks, origin="lower"):
    """Canvas positions of the centres of image pixels (row, col)."""
    out = []
    for r, c in picks:
        y = (rows - r - 0.5) if origin == "lower" else (r + 0.5)
        out.append([int((c + 0.5) * width / cols), int(y * height / rows)])
    return out


@browser_test(allowed_console=["/nxlua/login - Failed to load resource: the server responded with a status of 401"])
def test_login_wrong_password_and_logout(browser):
    b = browser
    b.open()
    b.login(password="not-the-password")
    b.wait(lambda d: "Wrong user name or password" in b.find("#login-error").text, what="the error")
    assert not b.find("#main").is_displayed()
    b.login()
    b.wait(lambda d: b.find("#main").is_displayed(), what="the folder")
    b.wait(lambda d: "scan.nxs" in b.find("#folder-table").text, what="the listing")
    listing = b.find("#folder-table").text
    assert "fit2d.nxs" in listing and "sub/" in listing and "escape.nxs" not in listing
    assert b.find("#who").text == USER
    cookie = {c["name"]: c for c in b.driver.get_cookies()}["nxlua_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and PASSWORD not in cookie["value"]
    assert b.js("return document.cookie") == ""  # HttpOnly: scripts never see it
    b.screenshot("viewer-folder.png")
    b.find("#logout").click()
    b.wait(lambda d: b.find("#login").is_displayed(), what="the login form after logout")
    b.driver.refresh()
    b.wait(lambda d: b.find("#login").is_displayed(), what="the login form after reload")
    assert not b.find("#main").is_displayed()


@browser_test()
def test_a_real_file_tree_attributes_and_default_image_pixels(browser, site):
    b = browser
    b.open()
    b.login()
    b.wait(lambda d: "fit2d.nxs" in b.find("#folder-table").text, what="the listing")
    b.driver.find_element(By.LINK_TEXT, "fit2d.nxs").click()
    b.painted()
    tree = b.find("#tree").text
    for text in ["entry", "NXentry", "instrument", "detector", "NXdetector", "stacking", "frame_status"]:
        assert text in tree, text
    assert "1 × 236 × 263" in tree and "int32" in tree
    attrs = b.find("#attrs").text
    assert "/entry/data" in attrs and "@signal" in attrs and "data" in attrs and "@NX_class" in attrs and "NXdata" in attrs
    # the canvas against the file (h5py) and matplotlib's viridis with 0.5-99.5 percentiles
    with h5py.File(site["root"] / "fit2d.nxs", "r") as f:
        frame = f["entry/data/data"][0].astype("f8")
    frame[frame < 0] = np.nan
    vmin, vmax = np.percentile(frame[~np.isnan(frame)], [0.5, 99.5])
    rng = np.random.default_rng(7)
    picks = [(int(r), int(c)) for r, c in zip(rng.integers(0, 236, 60), rng.integers(0, 263, 60))]
    picks.append(tuple(np.unravel_index(np.nanargmax(frame), frame.shape)))
    w, h = b.canvas_size()
    got = np.array(b.pixels(centres(236, 263, w, h, picks)))
    want = expected_rgb(np.array([frame[p] for p in picks]), vmin, vmax)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, (got[:5], want[:5])
    b.screenshot("viewer-real-file.png")
    # the attributes of a field from a click in the tree
    b.driver.find_element(By.LINK_TEXT, "frame_status").click()
    b.wait(lambda d: "/entry/stacking/frame_status" in b.find("#attrs").text, what="the field's attributes")
    assert "per frame: 0 missing" in b.find("#attrs").text


@browser_test()
def test_frame_slider_cursor_value_roi_and_line_profile(browser, site):
    b = browser
    b.open("#file=/scan.nxs")
    b.login()
    b.painted(frame=0)
    frames = stack_frames()
    rows, cols = frames.shape[1:]
    slider = b.find("#frame")
    slider.send_keys(Keys.ARROW_RIGHT)
    b.painted(frame=1)
    assert "frame=1" in b.driver.current_url
    w, h = b.canvas_size()
    frame = frames[1].astype("f8")
    frame[frames[1] < 0] = np.nan
    vmin, vmax = np.percentile(frame[~np.isnan(frame)], [0.5, 99.5])
    picks = [(0, 0), (5, 7), (10, 20), (39, 47), (20, 30), (33, 3)]
    got = np.array(b.pixels(centres(rows, cols, w, h, picks)))
    want = expected_rgb(np.array([frame[p] for p in picks]), vmin, vmax)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    # the value under the cursor, with its pixel and axis values
    overlay = b.find("#overlay")
    r, c = 12, 33
    x, y = centres(rows, cols, w, h, [(r, c)])[0]
    ActionChains(b.driver).move_to_element_with_offset(overlay, x - w // 2, y - h // 2).perform()
    b.wait(lambda d: b.find("#cursor").get_attribute("data-value") is not None, what="the cursor value")
    cur = b.find("#cursor")
    assert (int(cur.get_attribute("data-row")), int(cur.get_attribute("data-col"))) == (r, c)
    assert float(cur.get_attribute("data-value")) == frames[1, r, c]
    assert f"x (mm) = {round(c * 0.172, 4):g}" in cur.text and f"(y {r})" in cur.text, cur.text
    # a box ROI: its sum against numpy, masked pixels (the gap columns) counted
    Select(b.find("#tool")).select_by_value("roi")
    (r0, c0), (r1, c1) = (4, 10), (30, 40)
    p0, p1 = centres(rows, cols, w, h, [(r0, c0), (r1, c1)])
    ActionChains(b.driver).move_to_element_with_offset(overlay, p0[0] - w // 2, p0[1] - h // 2).click_and_hold() \
        .move_to_element_with_offset(overlay, p1[0] - w // 2, p1[1] - h // 2).release().perform()
    b.wait(lambda d: b.find("#roi-stats").get_attribute("data-sum") is not None, what="the ROI statistics")
    box = frames[1, min(r0, r1):max(r0, r1) + 1, min(c0, c1):max(c0, c1) + 1]
    assert float(b.find("#roi-stats").get_attribute("data-sum")) == box[box >= 0].sum()
    assert int(b.find("#roi-stats").get_attribute("data-masked")) == (box < 0).sum() > 0
    assert "roi=" in b.driver.current_url
    # the ROI follows the frame: next frame, new sum
    slider.send_keys(Keys.ARROW_RIGHT)
    b.painted(frame=2)
    box2 = frames[2, 4:31, 10:41]
    b.wait(lambda d: b.find("#roi-stats").get_attribute("data-sum") == str(int(box2[box2 >= 0].sum())), what="the ROI on frame 2")
    # a line profile along a row
    Select(b.find("#tool")).select_by_value("line")
    p0, p1 = centres(rows, cols, w, h, [(8, 2), (8, 45)])
    ActionChains(b.driver).move_to_element_with_offset(overlay, p0[0] - w // 2, p0[1] - h // 2).click_and_hold() \
        .move_to_element_with_offset(overlay, p1[0] - w // 2, p1[1] - h // 2).release().perform()
    b.wait(lambda d: b.find("#profile").get_attribute("data-points") == "44", what="the line profile")
    b.screenshot("viewer-stack.png")
    # the frame shown, saved as .npy: the stored frame exactly
    b.find("#export-npy").click()
    saved = b.downloads / "counts_2.npy"
    b.wait(lambda d: saved.exists() and saved.stat().st_size > 0, what="the .npy download")
    time.sleep(0.2)
    np.testing.assert_array_equal(np.load(saved), frames[2])
    # the colour bar: the colormap's 256 colours as the server maps them
    bar = b.js("""const g = document.getElementById('colorbar').getContext('2d');
        return [0, 100, 255].map((x) => Array.from(g.getImageData(x, 0, 1, 1).data).slice(0, 3));""")
    import matplotlib
    assert bar == [list(map(int, matplotlib.colormaps["viridis"](i, bytes=True)[:3])) for i in (0, 100, 255)]
    # the sum of frames 1 to 3: painted, and the ROI follows it
    b.find("#sum-from").send_keys("1")
    b.find("#sum-to").send_keys("4")
    b.find("#sum-apply").click()
    b.painted(frame="1:4")
    summed = frames[1:4].astype("i8").sum(axis=0)[4:31, 10:41]
    b.wait(lambda d: b.find("#roi-stats").get_attribute("data-sum") == str(int(summed[summed >= 0].sum())), what="the ROI of the sum")
    assert "sum=1%3A4" in b.driver.current_url or "sum=1:4" in b.driver.current_url
    # a summary of a field, on request
    b.driver.find_element(By.LINK_TEXT, "omega").click()
    b.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#summary")) == 1, what="the summary button")
    b.find("#summary").click()
    b.wait(lambda d: "min 10, max 12, mean 11 over 5 values" in b.find("#attrs").text, what="the summary")


@browser_test()
def test_the_canvas_drawn_from_table_indices_is_the_servers_png_and_frames_come_ahead(browser, site):
    import base64
    import io
    from PIL import Image
    b = browser

    def canvas():
        url = b.js("return document.getElementById('image').toDataURL('image/png')")
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))

    def requested(part):
        return b.js("return performance.getEntriesByType('resource').filter((e) => e.name.includes('/nxlua/image?') && e.name.includes(arguments[0])).length", part)
    b.open("#file=/scan.nxs&frame=2&scale=sqrt")
    b.login()
    b.painted(frame=2)
    assert requested("format=indices") >= 1 and requested("format=png") == 0
    painted = int(b.js("return document.getElementById('image').dataset.painted"))
    images = requested("")
    # another colormap: the picture kept is coloured again, nothing is asked of the server
    Select(b.find("#cmap")).select_by_value("inferno")
    b.painted(count=painted + 1, frame=2)
    assert requested("") == images
    ours = canvas()
    # the same state drawn from the server's PNG (draw=png): the same pixels, every one
    b.driver.get("about:blank")
    b.open("#file=/scan.nxs&frame=2&scale=sqrt&cmap=inferno&draw=png")
    b.painted(frame=2)
    assert requested("cmap=inferno") >= 1 and requested("format=indices") == 0
    png = canvas()
    assert ours.shape == png.shape and (ours[..., 3] == 255).all()
    np.testing.assert_array_equal(ours, png)
    # stepping through frames: the next ones are fetched ahead, and shown without a request
    b.driver.get("about:blank")
    b.open("#file=/scan.nxs&frame=2")
    b.painted(frame=2)
    b.find("#frame").send_keys(Keys.ARROW_RIGHT)
    b.painted(frame=3)
    b.wait(lambda d: requested("frame=4&") == 1, what="frame 4 fetched ahead")
    b.find("#frame").send_keys(Keys.ARROW_RIGHT)
    b.painted(frame=4)
    assert requested("frame=4&") == 1
    frames = stack_frames()
    frame = frames[4].astype("f8")
    frame[frames[4] < 0] = np.nan
    vmin, vmax = np.percentile(frame[~np.isnan(frame)], [0.5, 99.5])
    w, h = b.canvas_size()
    picks = [(0, 0), (5, 7), (10, 20), (39, 47), (20, 30)]
    got = np.array(b.pixels(centres(40, 48, w, h, picks)))
    np.testing.assert_array_equal(got, expected_rgb(np.array([frame[p] for p in picks]), vmin, vmax))
    # back to frame 2: kept, no request for frames 3 and 2 (1 and 0 are fetched ahead)
    b.find("#frame").send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)
    b.painted(frame=2)
    assert requested("frame=3&") == 1 and requested("frame=2&") == 1


@browser_test()
def test_a_growing_stack_updates_live_and_keeps_the_view(browser, site):
    b = browser
    path = site["root"] / "live.nxs"
    go = site["base"] / "live.go"
    release(go, 1)
    w = start_writer(site["base"], path, go, 6)
    try:
        assert w.stdout.readline().strip() == "1"
        view = "view=2.5,20.5,3.5,15.5"
        b.open(f"#file=/live.nxs&{view}&cmap=magma")
        b.login()
        b.painted()
        assert b.js("return document.getElementById('image').dataset.frames") == "1"
        release(go, 3)
        assert w.stdout.readline().strip() == "2" and w.stdout.readline().strip() == "3"
        b.wait(lambda d: b.js("return document.getElementById('image').dataset.frames") == "3", timeout=20, what="3 frames")
        assert b.js("return document.getElementById('frame').max") == "2"
        b.wait(lambda d: "3 × 24 × 32" in b.find("#tree").text, what="the new shape in the tree")
        # the view is kept: frame 0, the zoom, the colormap
        assert b.js("return document.getElementById('image').dataset.frame") == "0"
        address = lambda: urllib.parse.unquote(b.driver.current_url)  # noqa: E731
        assert view in address() and "cmap=magma" in address()
        # following: the newest frame is shown as it arrives
        b.find("#follow").click()
        release(go, 5)
        b.wait(lambda d: b.js("return document.getElementById('image').dataset.frame") == "4", timeout=20, what="frame 4 shown")
        assert view in address() and "follow=1" in address()
    finally:
        release(go, "stop")
        w.wait(60)


@browser_test()
def test_the_address_brings_back_the_same_picture_after_login(browser, site):
    b = browser
    b.open("#file=/scan.nxs")
    b.login()
    b.painted()
    b.find("#frame").send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    b.painted(frame=3)
    Select(b.find("#cmap")).select_by_value("inferno")
    Select(b.find("#scale")).select_by_value("sqrt")
    b.wait(lambda d: "scale=sqrt" in d.current_url and "cmap=inferno" in d.current_url, what="the address")
    overlay = b.find("#overlay")
    ActionChains(b.driver).scroll_to_element(overlay).scroll_from_origin(
        __import__("selenium.webdriver.common.actions.wheel_input", fromlist=["ScrollOrigin"]).ScrollOrigin.from_element(overlay), 0, -100).perform()
    b.wait(lambda d: "view=" in d.current_url, what="the zoom in the address")
    time.sleep(0.3)  # the last paint of the zoom
    b.painted()
    address = b.driver.current_url
    w, h = b.canvas_size()
    picks = [[x, y] for x in range(2, w, max(1, w // 9)) for y in range(2, h, max(1, h // 9))]
    before = b.pixels(picks)
    # a new browser (no session) opening the shared address lands on the same picture
    other = Browser(site["url"])
    try:
        other.driver.get(address)
        other.login()
        other.painted(frame=3)
        assert Select(other.find("#cmap")).first_selected_option.get_attribute("value") == "inferno"
        assert Select(other.find("#scale")).first_selected_option.get_attribute("value") == "sqrt"
        assert other.canvas_size() == [w, h]
        assert other.pixels(picks) == before
        assert urllib.parse.urlparse(other.driver.current_url).fragment == urllib.parse.urlparse(address).fragment
    finally:
        other.close()


@browser_test()
def test_hostile_names_are_shown_as_text_and_run_nothing(browser, site):
    b = browser
    b.open()
    b.login()
    b.wait(lambda d: HOSTILE + ".nxs" in b.find("#folder-table").text, what="the hostile file name as text")
    b.driver.find_element(By.LINK_TEXT, HOSTILE + ".nxs").click()
    b.wait(lambda d: HOSTILE in b.find("#tree").text, what="the hostile group name")
    for a in b.driver.find_elements(By.LINK_TEXT, HOSTILE):
        if a.is_displayed():
            a.click()
            break
    b.wait(lambda d: "@" + HOSTILE in b.find("#attrs").text, what="the hostile attribute name")
    assert "<script>alert(2)</script>" in b.find("#attrs").text
    b.wait(lambda d: b.find("#graph").get_attribute("data-points") == "4", what="the hostile field's plot")
    assert HOSTILE in b.find("#graph").text  # dygraphs' title and labels: text too
    assert b.js("return document.querySelectorAll('img, script:not([src])').length") == 0
    with pytest.raises(NoAlertPresentException):
        b.driver.switch_to.alert.text


@browser_test(allowed_console=["/nxlua/catalog?q=sample%3A%5B1+TO"])
def test_the_search_box_finds_files_in_the_catalog_and_opens_them(browser, site):
    b = browser

    def results():   # read in one step: the table is replaced while a search runs
        return b.js("const t = document.getElementById('search-results'); return t ? t.textContent : ''")
    b.open()
    b.login()
    b.wait(lambda d: b.find("#search").is_displayed(), what="the search box (the server has a catalog)")
    b.find("#search").send_keys('"rotation scan"' + Keys.ENTER)
    b.wait(lambda d: "/scan.nxs" in results(), what="the search results")
    rows = b.driver.find_elements(By.CSS_SELECTOR, "#search-results tr.domain")
    assert [r.find_element(By.TAG_NAME, "a").text for r in rows] == ["/scan.nxs"]
    assert "rotation scan" in rows[0].text
    assert "q=%22rotation+scan%22" in b.driver.current_url or "q=%22rotation%20scan%22" in b.driver.current_url
    b.screenshot("viewer-search.png")
    rows[0].find_element(By.TAG_NAME, "a").click()
    b.painted()
    assert "file=%2Fscan.nxs" in b.driver.current_url
    # every entry with a title: the hostile one is text, and runs nothing
    b.find("#search").clear()
    b.find("#search").send_keys("exists:title" + Keys.ENTER)
    b.wait(lambda d: HOSTILE in results(), what="the hostile title as text")
    assert b.js("return document.querySelectorAll('img, script:not([src])').length") == 0
    # a malformed query: the server's message, with the position
    b.find("#search").clear()
    b.find("#search").send_keys("sample:[1 TO" + Keys.ENTER)
    b.wait(lambda d: "catalog query" in b.find("#status").text, what="the query error")
    # the address brings the search back after a reload
    b.open("#q=" + urllib.parse.quote('"rotation scan"'))
    b.wait(lambda d: "/scan.nxs" in results(), what="the search from the address")


@browser_test()
def test_a_spectrum_plots_with_dygraphs_and_log_axes(browser):
    b = browser
    b.open("#file=/sub/spectrum.nxs")
    b.login()
    b.wait(lambda d: b.find("#graph").get_attribute("data-points") == "40", what="the 1-D plot")
    assert b.js("return document.querySelectorAll('#graph canvas').length") >= 1
    assert "energy (keV)" in b.find("#graph").text
    b.find("#logy").click()
    b.wait(lambda d: "logy=1" in d.current_url, what="log y in the address")
    b.screenshot("viewer-spectrum.png")
    b.find("#export-csv").click()
    saved = b.downloads / "intensity.csv"
    b.wait(lambda d: saved.exists() and saved.stat().st_size > 0, what="the CSV download")
    time.sleep(0.2)
    rows = np.loadtxt(saved, delimiter=",", skiprows=1)
    np.testing.assert_allclose(rows[:, 0], np.linspace(1, 20, 40))
    np.testing.assert_allclose(rows[:, 1], np.linspace(1, 20, 40) ** 2)
    np.testing.assert_allclose(rows[:, 2], np.linspace(1, 20, 40))  # the errors field
