"""Headless Chromium for the page (Debian's ``chromium`` + ``chromium-driver``, driven by
Selenium): the browser tests, the README's screenshot and the latency benchmark share it."""
from __future__ import annotations

import shutil
import urllib.request

import numpy as np

INSTALL = "apt-get install chromium chromium-driver"


def available() -> bool:
    return bool(shutil.which("chromium") and shutil.which("chromedriver"))


def headless(width: int = 1280, height: int = 1800):
    """A Selenium Chrome driver on headless Chromium (the caller quits it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not available():
        raise RuntimeError(f"no browser: install Debian's chromium and chromium-driver ({INSTALL})")
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def upload(driver, element_id: str, path) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#{element_id} input[type=file]").send_keys(str(path))


def move_slider(driver, element_id: str, value: float) -> None:
    """Set a Gradio slider as a drag does: its value, then input, change and the release."""
    from selenium.webdriver.common.by import By

    slider = driver.find_element(By.CSS_SELECTOR, f"#{element_id} input[type=range]")
    driver.execute_script(
        "const r = arguments[0]; r.value = arguments[1];"
        "for (const kind of ['input', 'change']) r.dispatchEvent(new Event(kind, {bubbles: true}));"
        "r.dispatchEvent(new PointerEvent('pointerup', {bubbles: true}));", slider, str(value))


def image_pixels(driver, element_id: str):
    """The picture an image component shows, HWC float, or None while it has none."""
    from selenium.webdriver.common.by import By

    from PIL import Image

    found = driver.find_elements(By.CSS_SELECTOR, f"#{element_id} img")
    if not found or not found[0].get_attribute("src"):
        return None
    with urllib.request.urlopen(found[0].get_attribute("src")) as response:
        return np.asarray(Image.open(response).convert("RGB"), dtype=float)


def open_page(driver, url: str, timeout: float = 120):
    """Load the page and wait until its face upload is there; returns a waiter of ``timeout``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, timeout)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo input[type=file]"))
    return wait


def edit_face(driver, wait, photo, attribute: str) -> None:
    """Upload ``photo``, wait for its detected face, type ``attribute``."""
    from selenium.webdriver.common.by import By

    upload(driver, "photo", photo)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#landmarks img"))
    box = driver.find_element(By.CSS_SELECTOR, "#attribute input")
    box.clear()
    box.send_keys(attribute + "\n")

