"""Headless Chromium for the bench scripts (Debian's chromium + chromium-driver, as the browser test)."""

from __future__ import annotations

from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains

# No sandbox as root, and no background traffic to a closed network (see the machine notes).
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chrome(width: int, height: int) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"))
    driver.set_script_timeout(300)
    # The page's own size, whatever window decorations headless mode pretends to have.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    return driver


def drag(driver, canvas, zoom: float, size: tuple[int, int], points: list[tuple[float, float]]) -> None:
    """Brush through picture points (offsets from the canvas centre at the page's zoom)."""
    w, h = size
    screen = [((x - w / 2) * zoom, (y - h / 2) * zoom) for x, y in points]
    chain = ActionChains(driver).move_to_element_with_offset(canvas, round(screen[0][0]), round(screen[0][1]))
    chain = chain.click_and_hold()
    for (x0, y0), (x1, y1) in zip(screen, screen[1:]):
        chain = chain.move_by_offset(round(x1) - round(x0), round(y1) - round(y0))
    chain.release().perform()
