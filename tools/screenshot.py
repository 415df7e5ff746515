"""The web app in use, as docs/screenshot.png: a photo with its spoon filled away and a new stroke.

    nice -n 15 python tools/screenshot.py [--model CKPT] [--out docs/screenshot.png]

Starts the server in-process on a free loopback port, drives headless Chromium (Debian's
chromium + chromium-driver, as the browser test does): opens the bundled coffee photo, zooms
in, brushes over the spoon, presses Enter, waits for the fill, paints a second stroke (not yet
filled, to show the brush), and saves a 1280x800 screenshot.
Model: ``--model``, else the shipped default weights when present, else an untrained ffc-small
(which starts as the identity on OpenCV's Telea fill, so the picture shows that fill).
"""

from __future__ import annotations

import sys

import argparse
import tempfile
import time
from pathlib import Path

# the bench's shared helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from _browser import chrome, drag
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

import fillgap
from fillgap.checkpoint import DEFAULT_WEIGHTS, export_weights
from fillgap.models import create_model
from fillgap.server import create_app, running

PHOTO = Path(fillgap.__file__).parent / "data" / "bundled" / "test" / "coffee.jpg"
# Picture pixels of coffee.jpg (576 x 384): the spoon, from the top of its handle to its bowl,
# and the cup's handle.
SPOON = [
    (396, 62),
    (392, 100),
    (386, 140),
    (380, 172),
    (371, 206),
    (360, 234),
    (350, 272),
    (370, 272),
    (364, 288),
    (350, 294),
    (334, 288),
    (328, 272),
    (334, 256),
    (350, 250),
    (366, 256),
    (370, 272),
]
CUP_HANDLE = [(240, 232), (215, 234), (200, 250), (200, 272), (215, 288), (238, 291)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "screenshot.png")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        # None: the shipped default, as `fillgap serve` loads it (named fillgap-texture on the page)
        model = args.model
        if model is None and not DEFAULT_WEIGHTS.exists():
            model = Path(tmp) / "ffc-small.safetensors"
            export_weights(model, create_model("ffc-small"))
        driver = chrome(1280, 800)
        try:
            with running(create_app(model)) as url:
                driver.get(url)
                driver.find_element(By.ID, "file").send_keys(str(PHOTO))
                body = driver.find_element(By.TAG_NAME, "body")
                WebDriverWait(driver, 20).until(lambda _: body.get_attribute("data-state") == "ready")
                for _ in range(2):
                    driver.find_element(By.ID, "zoom-in").click()
                canvas = driver.find_element(By.ID, "mask")
                zoom, w, h = driver.execute_script(
                    "const c = arguments[0]; return [c.getBoundingClientRect().width / c.width, c.width, c.height];",
                    canvas,
                )
                size_input = driver.find_element(By.ID, "size")
                driver.execute_script(
                    "arguments[0].value = 56; arguments[0].dispatchEvent(new Event('input'));", size_input
                )
                drag(driver, canvas, zoom, (w, h), SPOON)
                body.send_keys(Keys.ENTER)
                WebDriverWait(driver, 120).until(lambda _: body.get_attribute("data-fills") == "1")
                drag(driver, canvas, zoom, (w, h), CUP_HANDLE)
                # Leave the pointer over the picture so the brush outline shows.
                ActionChains(driver).move_to_element_with_offset(
                    canvas, round((250 - w / 2) * zoom), round((330 - h / 2) * zoom)
                ).perform()
                time.sleep(0.3)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(args.out))
        finally:
            driver.quit()
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
