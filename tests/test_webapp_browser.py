"""The page in a real browser: headless Chromium, driven by Selenium, against a live server.

Skips (with the reason) only where Chromium or its driver cannot be had; `make test` installs
them as root (Debian packages chromium and chromium-driver).
"""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fillgap
from fillgap.imageio import read_image
from fillgap.models import create_model
from fillgap.server import create_app, running

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
PHOTO = Path(fillgap.__file__).parent / "data" / "bundled" / "test" / "coffee.jpg"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip(
        "Chromium is not installed (apt-get install chromium chromium-driver, or `make test` as root)",
        allow_module_level=True,
    )

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

# Flags from the machine notes: no sandbox as root, and no background traffic to a closed network.
CHROME_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
]

# A URL's contents as [blob type, base64] (the page's blob: URLs can only be read from inside it).
READ_URL = """
const done = arguments[arguments.length - 1];
fetch(arguments[0]).then((r) => r.blob()).then(async (blob) => {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  done([blob.type, btoa(s)]);
});
"""
# Downloads are anchors the page clicks: record them instead of saving files.
CATCH_DOWNLOADS = """
window.savedFiles = [];
HTMLAnchorElement.prototype.click = function () { window.savedFiles.push([this.href, this.download]); };
"""
MASK_ALPHA = """
const c = document.getElementById("mask");
return Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data.filter((_, i) => i % 4 === 3));
"""


@pytest.fixture(scope="module")
def server():
    with running(create_app(create_model("ffc-tiny"))) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    except Exception as exc:  # a broken install is a skip with its reason, not an error in our code
        pytest.skip(f"Chromium did not start: {str(exc).splitlines()[0]}")
    driver.set_script_timeout(120)
    yield driver
    driver.quit()


def read_url(driver, url: str) -> tuple[str, bytes]:
    kind, data = driver.execute_async_script(READ_URL, url)
    return kind, base64.b64decode(data)


def picture_on_page(driver) -> np.ndarray:
    _, data = read_url(driver, driver.find_element(By.ID, "picture").get_attribute("src"))
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def mask_alpha(driver) -> np.ndarray:
    canvas = driver.find_element(By.ID, "mask")
    w, h = int(canvas.get_attribute("width")), int(canvas.get_attribute("height"))
    return np.array(driver.execute_script(MASK_ALPHA), np.uint8).reshape(h, w)


def saved_file(driver) -> tuple[str, str, bytes]:
    """The name, blob type and bytes of the one download the page started since CATCH_DOWNLOADS."""
    WebDriverWait(driver, 30).until(lambda _: driver.execute_script("return window.savedFiles.length"))
    ((href, name),) = driver.execute_script("return window.savedFiles.splice(0)")
    kind, data = read_url(driver, href)
    return name, kind, data


def open_picture(driver, url: str, path: Path):
    driver.get(url)  # a fresh page: no state left from an earlier test
    driver.find_element(By.ID, "file").send_keys(str(path))
    wait_for(driver, "data-state", "ready", timeout=30)


def save_png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def wait_for(driver, attribute: str, value: str, timeout: float = 300):
    # Generous: a fill takes about a second on a quiet machine, but the suite may share two
    # cores with a training run.
    body = driver.find_element(By.TAG_NAME, "body")
    WebDriverWait(driver, timeout).until(lambda _: body.get_attribute(attribute) == value)


def stroke(driver, canvas, start: tuple[int, int], moves: list[tuple[int, int]]):
    """Drag from ``start`` (offset from the canvas centre, CSS px) through relative ``moves``."""
    chain = ActionChains(driver).move_to_element_with_offset(canvas, *start).click_and_hold()
    for dx, dy in moves:
        chain = chain.move_by_offset(dx, dy)
    chain.release().perform()


def distance_to_polyline(h: int, w: int, points: np.ndarray) -> np.ndarray:
    """Distance of every pixel centre to the polyline through ``points`` (image px)."""
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    best = np.full((h, w), np.inf)
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
        best = np.minimum(best, np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy)))
    return best


def test_brush_fill_keep_going_and_undo(browser, server):
    original = read_image(PHOTO)
    h, w = original.shape[:2]
    browser.get(server)
    browser.find_element(By.ID, "file").send_keys(str(PHOTO))
    wait_for(browser, "data-state", "ready")
    canvas = browser.find_element(By.ID, "mask")
    rect = browser.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return [r.left, r.top, r.width, r.height, arguments[0].width, arguments[0].height];",
        canvas,
    )
    left, top, css_w, css_h, canvas_w, canvas_h = rect
    assert (canvas_w, canvas_h) == (w, h)  # the mask is painted at the picture's resolution
    scale = canvas_w / css_w
    brush = int(browser.find_element(By.ID, "size").get_attribute("value"))
    radius = brush * scale / 2

    # First stroke, run with the button.
    start, moves = (-120, -40), [(90, 25), (90, 10)]
    stroke(browser, canvas, start, moves)
    browser.find_element(By.ID, "run").click()
    wait_for(browser, "data-fills", "1")
    first = picture_on_page(browser)
    assert first.shape == original.shape

    # Where the pointer went, in picture pixels (Selenium offsets are from the centre).
    cx, cy = left + css_w / 2, top + css_h / 2
    pts = np.cumsum(np.array([start, *moves], float), axis=0)
    pts = np.stack([(cx + pts[:, 0] - left) * scale, (cy + pts[:, 1] - top) * scale], axis=1)
    dist = distance_to_polyline(h, w, pts)
    inside, outside = dist < radius - 3, dist > radius + 3
    changed = (first != original).any(axis=2)
    assert changed[inside].mean() > 0.6, "the fill did not change the painted stroke"
    assert not changed[outside].any(), "pixels outside the stroke changed"

    # Keep brushing on the result, run with Enter.
    stroke(browser, canvas, (150, 110), [(0, -40)])
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ENTER)
    wait_for(browser, "data-fills", "2")
    second = picture_on_page(browser)
    assert (second != first).any()
    assert np.array_equal(second[inside], first[inside])  # the first fill is kept

    # Undo twice goes back past the second fill to the first result with its stroke gone.
    browser.find_element(By.ID, "undo").click()
    browser.find_element(By.ID, "undo").click()
    assert np.array_equal(picture_on_page(browser), first)
    wait_for(browser, "data-fills", "1")  # the page counts the fills of what it shows
    assert "1 fill" in browser.find_element(By.ID, "info").text
    # Before/after shows the picture as opened left of a divider; download is offered.
    browser.find_element(By.ID, "compare").click()
    assert browser.find_element(By.ID, "original").is_displayed()
    assert browser.find_element(By.ID, "divider").is_displayed()
    assert browser.find_element(By.ID, "download").is_enabled()
    assert browser.find_element(By.ID, "message").text.startswith("Filled in")

    # Eraser, undo/redo of paint, zoom: page-side only, no server call.
    browser.find_element(By.ID, "compare").click()
    painted = lambda: browser.execute_script(  # noqa: E731
        "const c = document.getElementById('mask'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
        "for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n;"
    )
    assert painted() == 0
    stroke(browser, canvas, (-150, 100), [(100, 0)])
    brushed = painted()
    assert brushed > 0.5 * 100 * brush * scale
    browser.find_element(By.ID, "eraser").click()
    stroke(browser, canvas, (-150, 100), [(50, 0)])
    erased = painted()
    assert 0 < erased < 0.8 * brushed
    browser.find_element(By.ID, "undo").click()
    assert painted() == brushed
    browser.find_element(By.ID, "redo").click()
    assert painted() == erased
    browser.find_element(By.ID, "zoom-in").click()
    assert browser.find_element(By.ID, "zoom-value").text == f"{round(css_w / w * 125)}%"
    assert canvas.size["width"] == pytest.approx(css_w * 1.25, abs=1)


def test_limits_and_server_errors_are_shown_on_the_page(browser, tmp_path):
    """Refusals come as one-line messages on the page: the pixel limit checked before upload,
    and a 413 from the server (its JSON message, read after the server drained the upload)."""
    from fillgap.server import ServerSettings

    big, tiny = tmp_path / "big.png", tmp_path / "tiny.png"
    Image.fromarray(np.full((40, 60, 3), 120, np.uint8)).save(big)
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(tiny)
    # The tiny picture alone fits, the picture plus its mask and the form around them do not.
    settings = ServerSettings(max_pixels=1000, max_upload_bytes=tiny.stat().st_size + 100)
    message = lambda: browser.find_element(By.ID, "message").text  # noqa: E731
    with running(create_app(create_model("ffc-tiny"), settings)) as url:
        browser.get(url)
        browser.find_element(By.ID, "file").send_keys(str(big))
        WebDriverWait(browser, 60).until(lambda _: message())
        assert "60 x 40 = 2,400 pixels" in message() and "--max-pixels" in message()

        browser.find_element(By.ID, "file").send_keys(str(tiny))
        wait_for(browser, "data-state", "ready")
        stroke(browser, browser.find_element(By.ID, "mask"), (0, 0), [(3, 0)])
        browser.find_element(By.ID, "run").click()
        WebDriverWait(browser, 300).until(lambda _: message().startswith("Fill failed"))
        assert "upload too large: the limit is" in message()
        assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-fills") == "0"


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_mask_file_is_loaded_scaled_and_saved(browser, server, tmp_path):
    """A mask picture (white = fill) of twice the picture's size lands on the mask layer scaled
    down; Save mask gives it back as a black-and-white PNG; Undo brings back the paint before."""
    picture = save_png(tmp_path / "p.png", noise(40, 60))
    mask = np.zeros((80, 120), np.uint8)
    mask[10:50, 20:60] = 255  # picture pixels y 5..25, x 10..30
    mask_file = save_png(tmp_path / "m.png", mask)
    open_picture(browser, server, picture)
    browser.find_element(By.ID, "mask-file").send_keys(str(mask_file))
    message = browser.find_element(By.ID, "message")
    WebDriverWait(browser, 30).until(lambda _: message.text.startswith("Mask loaded"))
    assert "scaled from 120 x 80" in message.text

    alpha = mask_alpha(browser)
    expected = np.zeros((40, 60), bool)
    expected[5:25, 10:30] = True
    assert (alpha[6:24, 11:29] == 255).all()
    grown = np.zeros_like(expected)
    grown[4:26, 9:31] = True
    assert (alpha[~grown] == 0).all()

    browser.execute_script(CATCH_DOWNLOADS)
    browser.find_element(By.ID, "mask-save").click()
    name, kind, data = saved_file(browser)
    assert (name, kind) == ("p-mask.png", "image/png")
    saved = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    assert saved.shape == (40, 60)
    assert np.array_equal(saved > 127, alpha > 127)  # white where the layer fills
    assert (saved[~grown] == 0).all()

    browser.find_element(By.ID, "undo").click()
    assert not mask_alpha(browser).any()


def test_space_drag_pans_instead_of_painting(browser, server, tmp_path):
    open_picture(browser, server, save_png(tmp_path / "p.png", noise(360, 480)))
    for _ in range(6):  # the button keeps the focus: Space must not press it
        browser.find_element(By.ID, "zoom-in").click()
    viewport = browser.find_element(By.ID, "viewport")
    # From the middle of the zoomed picture, with room to pan both ways.
    left, top = browser.execute_script(
        """const v = arguments[0];
        v.scrollLeft = (v.scrollWidth - v.clientWidth) / 2; v.scrollTop = (v.scrollHeight - v.clientHeight) / 2;
        return [v.scrollLeft, v.scrollTop];""",
        viewport,
    )
    assert left > 120 and top > 80
    scroll = "return [arguments[0].scrollLeft, arguments[0].scrollTop]"

    canvas = browser.find_element(By.ID, "mask")
    (
        ActionChains(browser)
        .key_down(Keys.SPACE)
        .move_to_element(canvas)
        .click_and_hold()
        .move_by_offset(-60, -40)
        .move_by_offset(-60, -40)
        .release()
        .key_up(Keys.SPACE)
        .perform()
    )
    after = browser.execute_script(scroll, viewport)
    assert after == pytest.approx([left + 120, top + 80], abs=1)  # the picture followed the pointer
    assert not mask_alpha(browser).any()
    assert browser.find_element(By.ID, "zoom-value").text == "381%"  # Space pressed no button

    stroke(browser, canvas, (0, 0), [(30, 0)])  # Space released: the brush paints again
    assert mask_alpha(browser).any()


def test_pasted_image_opens_as_the_picture(browser, server):
    browser.get(server)
    browser.execute_script("""
        const c = Object.assign(document.createElement("canvas"), { width: 50, height: 30 });
        c.getContext("2d").fillRect(0, 0, 10, 10);
        c.toBlob((blob) => {
          const data = new DataTransfer();
          data.items.add(new File([blob], "image.png", { type: "image/png" }));
          document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
        }, "image/png");
    """)
    wait_for(browser, "data-state", "ready", timeout=10)
    assert browser.find_element(By.ID, "info").text.startswith("image.png: 50 x 30 px")
    assert browser.execute_script("const c = document.getElementById('mask'); return [c.width, c.height]") == [50, 30]


def test_a_message_does_not_move_the_picture(browser, server, tmp_path):
    """A tall picture fitted to the window stays whole above the status bar when a message shows."""
    open_picture(browser, server, save_png(tmp_path / "tall.png", np.full((1200, 200, 3), 90, np.uint8)))
    rects = """return ["viewport", "stage", "statusbar"].map((id) => {
        const r = document.getElementById(id).getBoundingClientRect(); return [r.top, r.bottom]; });"""
    before = browser.execute_script(rects)
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ENTER)  # nothing painted: a note
    message = browser.find_element(By.ID, "message")
    assert message.is_displayed() and message.text.startswith("Paint over")
    after = browser.execute_script(rects)
    assert after == before
    (_, stage_bottom), (bar_top, _) = after[1], after[2]
    assert stage_bottom <= bar_top
    message.click()  # dismissed
    assert not message.is_displayed()


def test_before_after_divider_and_download_formats(browser, server, tmp_path):
    yy, xx = np.mgrid[0:160, 0:240]
    smooth = np.stack([xx, yy, (xx + yy) // 2], axis=2).astype(np.uint8)  # JPEG keeps it close
    open_picture(browser, server, save_png(tmp_path / "p.png", smooth))
    stroke(browser, browser.find_element(By.ID, "mask"), (-40, 0), [(80, 0)])
    browser.find_element(By.ID, "run").click()
    wait_for(browser, "data-fills", "1")
    filled = picture_on_page(browser)

    browser.find_element(By.ID, "compare").click()
    divider = browser.find_element(By.ID, "divider")
    stage = browser.find_element(By.ID, "stage").rect
    assert divider.rect["x"] + divider.rect["width"] / 2 == pytest.approx(stage["x"] + stage["width"] / 2, abs=1.5)
    ActionChains(browser).drag_and_drop_by_offset(divider.find_element(By.CLASS_NAME, "grip"), -60, 0).perform()
    x = divider.rect["x"] + divider.rect["width"] / 2
    assert x == pytest.approx(stage["x"] + stage["width"] / 2 - 60, abs=1.5)
    # What shows where: the original left of the divider, the fill right of it.
    shown = "return document.elementFromPoint(arguments[0], arguments[1]).id"
    y = stage["y"] + stage["height"] / 2
    assert browser.execute_script(shown, x - 20, y) == "original"
    assert browser.execute_script(shown, x + 20, y) == "picture"

    browser.execute_script(CATCH_DOWNLOADS)
    Select(browser.find_element(By.ID, "format")).select_by_value("jpeg")
    browser.find_element(By.ID, "download").click()
    name, kind, data = saved_file(browser)
    assert (name, kind) == ("p-filled.jpg", "image/jpeg")
    jpeg = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), float)
    assert jpeg.shape == filled.shape
    assert np.abs(jpeg - filled).mean() < 3

    Select(browser.find_element(By.ID, "format")).select_by_value("png")
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.CONTROL, "s")
    name, kind, data = saved_file(browser)
    assert (name, kind) == ("p-filled.png", "image/png")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), filled)


class _SlowFill:
    """A method that takes up to 30 s, checks for cancellation every 50 ms and says how it ended."""

    def __new__(cls):
        from fillgap.methods import FillMethod

        class Slow(FillMethod):
            name = kind = source = "slow"
            ended: list = []

            def fill(self, image, hole):
                import time

                from fillgap.cancel import Cancelled, checkpoint

                try:
                    for _ in range(600):
                        checkpoint()
                        time.sleep(0.05)
                except Cancelled:
                    self.ended.append(("cancelled", time.monotonic()))
                    raise
                self.ended.append(("finished", time.monotonic()))
                return image

        return Slow()


def test_a_long_fill_shows_its_time_and_cancel_stops_the_server_too(browser, tmp_path):
    import time

    method = _SlowFill()
    path = save_png(tmp_path / "p.png", noise(20, 30))
    with running(create_app(method)) as url:
        open_picture(browser, url, path)
        stroke(browser, browser.find_element(By.ID, "mask"), (0, 0), [(3, 0)])
        browser.find_element(By.ID, "run").click()
        busy = browser.find_element(By.ID, "busy")
        WebDriverWait(browser, 30).until(lambda _: busy.is_displayed() and " s" in busy.text)
        cancel = browser.find_element(By.ID, "cancel")
        assert cancel.is_displayed()
        time.sleep(1.2)
        assert busy.text.startswith("Filling") and int(busy.text.split()[1]) >= 1  # the seconds tick
        cancel.click()
        clicked = time.monotonic()
        message = browser.find_element(By.ID, "message")
        WebDriverWait(browser, 30).until(lambda _: "cancelled" in message.text)
        assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-fills") == "0"
        assert not cancel.is_displayed()
        deadline = time.monotonic() + 10
        while not method.ended and time.monotonic() < deadline:
            time.sleep(0.1)
        assert method.ended and method.ended[0][0] == "cancelled", method.ended
        assert method.ended[0][1] - clicked < 5  # the server stopped within seconds of the click


def test_the_page_fills_a_paint_over_most_of_the_picture(browser, server, tmp_path):
    """The server refuses a mask of 60 % or more from API clients (often an inverted file); the
    page's paint is the user's own, so the page sends force=true."""
    path = save_png(tmp_path / "p.png", noise(20, 30))
    open_picture(browser, server, path)
    stroke(browser, browser.find_element(By.ID, "mask"), (0, 0), [(3, 0)])  # the 40 px brush covers it all
    assert (mask_alpha(browser) > 0).mean() > 0.6
    browser.find_element(By.ID, "run").click()
    wait_for(browser, "data-fills", "1", timeout=300)


def test_the_model_menu_lists_the_servers_methods_and_fills_with_the_chosen_one(browser, server, tmp_path):
    from selenium.webdriver.support.ui import Select

    from fillgap import inpaint

    picture = noise(40, 60, seed=3)
    open_picture(browser, server, save_png(tmp_path / "p.png", picture))
    menu = Select(browser.find_element(By.ID, "model"))
    WebDriverWait(browser, 30).until(lambda _: len(menu.options) > 1)
    names = [o.text for o in menu.options]
    assert names[0] == "ffc-tiny" and "opencv-telea" in names and "ffc-small" not in names  # fill methods only
    menu.select_by_visible_text("opencv-telea")
    stroke(browser, browser.find_element(By.ID, "mask"), (0, 0), [(4, 0)])
    hole = mask_alpha(browser) > 0
    browser.find_element(By.ID, "run").click()
    wait_for(browser, "data-fills", "1", timeout=300)
    expected = inpaint(picture, hole.astype(np.uint8) * 255, "opencv-telea")
    assert np.array_equal(picture_on_page(browser), expected)
