"""The web app on a 12 MP photo (4000 x 3000), end to end in headless Chromium.

    nice -n 15 python bench/webapp_large.py

Makes a 4000x3000 JPEG from a bundled photo (cropped to 4:3, scaled up, fine noise added so it
compresses like a real photo), serves the app in-process on loopback, and in the page: opens
it, brushes a stroke, fills (Enter), brushes a second stroke on the result and fills again,
which uploads the first result as PNG. Checks that every pixel outside the first stroke is
unchanged, and writes the sizes and times to bench/results/webapp_large.json.
Model: ``--model``, else the shipped default weights when present, else an untrained ffc-small.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _browser import chrome, drag
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

import fillgap
from fillgap.checkpoint import DEFAULT_WEIGHTS, export_weights
from fillgap.imageio import read_image
from fillgap.models import create_model
from fillgap.server import create_app, running

from _common import RESULTS, machine, save_json

SOURCE = Path(fillgap.__file__).parent / "data" / "bundled" / "test" / "picosdeeuropa_by_Aitzol_Berasategi.jpg"
W, H = 4000, 3000
READ_PICTURE = """
const done = arguments[arguments.length - 1];
fetch(document.getElementById("picture").src).then((r) => r.arrayBuffer()).then((buf) => {
  const bytes = new Uint8Array(buf);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  done(btoa(s));
});
"""


def make_photo(path: Path) -> None:
    src = Image.open(SOURCE).convert("RGB")
    cw = min(src.width, src.height * 4 // 3)
    ch = cw * 3 // 4
    left, top = (src.width - cw) // 2, (src.height - ch) // 2
    big = np.asarray(src.crop((left, top, left + cw, top + ch)).resize((W, H), Image.BICUBIC), dtype=np.int16)
    noise = np.random.default_rng(0).integers(-6, 7, big.shape, dtype=np.int16)
    Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8)).save(path, quality=92)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS / "webapp_large.json")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo-4000x3000.jpg"
        make_photo(photo)
        model, source = args.model, str(args.model)
        if model is None and DEFAULT_WEIGHTS.exists():
            model, source = DEFAULT_WEIGHTS, "shipped default weights"
        if model is None:
            model, source = Path(tmp) / "ffc-small.safetensors", "untrained ffc-small (same cost as trained)"
            export_weights(model, create_model("ffc-small"))
        driver = chrome(1280, 800)
        record: dict = {"photo": f"{W}x{H} JPEG", "photo_bytes": photo.stat().st_size, "model_source": source}
        try:
            with running(create_app(model)) as url:
                driver.get(url)
                body = driver.find_element(By.TAG_NAME, "body")
                t = time.perf_counter()
                driver.find_element(By.ID, "file").send_keys(str(photo))
                WebDriverWait(driver, 120).until(lambda _: body.get_attribute("data-state") == "ready")
                record["open_s"] = round(time.perf_counter() - t, 2)
                canvas = driver.find_element(By.ID, "mask")
                zoom = driver.execute_script(
                    "const c = arguments[0]; return c.getBoundingClientRect().width / c.width;", canvas
                )
                record["page_zoom"] = round(zoom, 4)
                brush_px = int(driver.find_element(By.ID, "size").get_attribute("value")) / zoom
                record["brush_diameter_picture_px"] = round(brush_px)
                fills = []
                strokes = [[(1500, 1200), (1900, 1300), (2300, 1250)], [(2800, 2200), (2900, 2500)]]
                for n, points in enumerate(strokes, start=1):
                    drag(driver, canvas, zoom, (W, H), points)
                    t = time.perf_counter()
                    body.send_keys(Keys.ENTER)
                    WebDriverWait(driver, 600).until(lambda _: body.get_attribute("data-fills") == str(n))
                    fills.append(
                        {
                            "round_trip_s": round(time.perf_counter() - t, 2),
                            "page_says": driver.find_element(By.ID, "message").text,
                        }
                    )
                    if n == 1:
                        png = base64.b64decode(driver.execute_async_script(READ_PICTURE))
                        fills[-1]["result_png_bytes"] = len(png)
                        first = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
                record["fills"] = fills
        finally:
            driver.quit()
        original = read_image(photo)
        changed = (first != original).any(axis=2)
        ys, xs = np.nonzero(changed)
        record["first_fill_changed_pixels"] = int(changed.sum())
        record["first_fill_changed_box"] = (
            [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())] if len(xs) else None
        )
        # The first stroke spans x 1500-2300, y 1200-1300, widened by the brush radius and by
        # 2 CSS px: the pointer moves in whole CSS px, several picture px at this zoom.
        r = brush_px / 2 + 2 / zoom
        outside = np.ones(changed.shape, bool)
        outside[int(1200 - r) : int(1300 + r), int(1500 - r) : int(2300 + r)] = False
        record["first_fill_outside_stroke_unchanged"] = bool(not changed[outside].any())
    record["cpu_count"] = os.cpu_count()
    record["loadavg_1min"] = round(os.getloadavg()[0], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record["machine"] = machine()
    save_json(args.out, record)
    print(json.dumps(record, indent=1))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
