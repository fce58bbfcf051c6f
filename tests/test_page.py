"""The page of a real `fgvc serve` (a subprocess on a loopback port) in headless Chromium.

Debian's ``chromium`` and ``chromium-driver`` are driven by Selenium; nothing is downloaded at test
time (``make test`` installs the two packages where it can: Debian as root). Without them the browser
test is skipped, and the summary says why. Set ``FGVC_PAGE_SCREENSHOT=path.png`` to keep the
screenshot somewhere else than the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from test_predict import save_with_exif

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--disable-default-apps", "--disable-extensions", "--metrics-recording-only", "--mute-audio"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``fgvc serve`` in a subprocess on a free loopback port, waited for through /healthz."""

    def __init__(self, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.process = subprocess.Popen([sys.executable, "-m", "fgvc", "serve", *args, "--port", str(self.port)],
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"fgvc serve exited: {self.process.stdout.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("fgvc serve did not answer /healthz within 180 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def server(deploy_models):
    server = Server("--checkpoint", str(deploy_models.dynamic_mlp), "--prior", str(deploy_models.prior_run))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def photo(deploy_models, tmp_path_factory) -> tuple[Path, dict]:
    info = json.loads((deploy_models.data / "val.json").read_text())["images"][1]
    path = tmp_path_factory.mktemp("page") / "beetle.jpg"
    save_with_exif(deploy_models.data / info["file_name"], path, info["latitude"], info["longitude"], info["date"])
    return path, info


def api(server: Server, path: Path, **fields) -> dict:
    with open(path, "rb") as f:
        answer = httpx.post(server.url + "/v1/predict", files={"image": (path.name, f, "image/jpeg")},
                            data={"topk": "5", "compare": "true", **fields}, timeout=60)
    answer.raise_for_status()
    return answer.json()


def test_real_server_on_loopback(server, photo):
    info = httpx.get(server.url + "/v1/model", timeout=10).json()
    assert len(info["classes"]) == 4 and info["metadata"] == ["geo", "temporal"]
    answer = api(server, photo[0])
    assert answer["metadata_source"] == "exif" and answer["lat"] == pytest.approx(photo[1]["latitude"])
    # bound to loopback only (the default): its listening socket in the kernel's table is 127.0.0.1
    listening = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    mine = [fields[1] for fields in listening if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == server.port]
    assert mine == ["0100007F:%04X" % server.port]


def browser(tmp_path: Path, width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--window-size={width},{height}"]:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))


def shown_top(driver) -> list[tuple[str, str]]:
    from selenium.webdriver.common.by import By

    items = driver.find_elements(By.CSS_SELECTOR, "#results li")
    return [(i.find_element(By.CSS_SELECTOR, ".class").text, i.find_element(By.CSS_SELECTOR, ".probability").text)
            for i in items]


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver "
                    "(make test installs them on Debian as root)")
def test_page_in_headless_chromium(server, photo, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    path, info = photo
    names = httpx.get(server.url + "/v1/model", timeout=10).json()["taxonomy"]["common_name"]
    driver = browser(tmp_path, 1200, 1100)
    wait = WebDriverWait(driver, 60)
    try:
        driver.get(server.url + "/")
        wait.until(lambda d: "classes" in d.find_element(By.ID, "model").text)
        wait.until(lambda d: d.execute_script("return document.querySelectorAll('#map path.land').length") == 1)
        driver.find_element(By.ID, "photo").send_keys(str(path))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li")) == 4)  # 4 classes: all shown

        # the place and date of the photo's EXIF fill the fields
        assert float(driver.find_element(By.ID, "lat").get_attribute("value")) == pytest.approx(info["latitude"])
        assert float(driver.find_element(By.ID, "lon").get_attribute("value")) == pytest.approx(info["longitude"])
        assert driver.find_element(By.ID, "date").get_attribute("value") == info["date"][:10]
        assert "from the photo" in driver.find_element(By.ID, "status").text

        # the top predictions are the API's
        answer = api(server, path)
        want = [(f"{t['class']} {names[t['index']]}", f"{100 * t['probability']:.1f} %") for t in answer["top"]]
        assert shown_top(driver) == want
        assert driver.find_element(By.ID, "without-column").is_displayed()
        without = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#without .class")]
        assert without == [f"{t['class']} {names[t['index']]}" for t in answer["without_metadata"]]
        screenshot = Path(os.environ.get("FGVC_PAGE_SCREENSHOT") or tmp_path / "page.png")
        driver.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 10_000

        # keyboard: the map moves the location by 1 degree, and the ranking is asked again
        lat = float(driver.find_element(By.ID, "lat").get_attribute("value"))
        driver.find_element(By.ID, "map").send_keys(Keys.ARROW_UP)
        wait.until(lambda d: "as entered" in d.find_element(By.ID, "status").text)
        assert float(driver.find_element(By.ID, "lat").get_attribute("value")) == pytest.approx(lat + 1, abs=0.01)
        moved = api(server, path, lat=driver.find_element(By.ID, "lat").get_attribute("value"),
                    lon=driver.find_element(By.ID, "lon").get_attribute("value"), date=info["date"][:10])
        wait.until(lambda d: shown_top(d)[0][1] == f"{100 * moved['top'][0]['probability']:.1f} %")

        # location off: the image alone (the model needs place and date together)
        driver.find_element(By.ID, "no-location").click()
        wait.until(lambda d: "image alone" in d.find_element(By.ID, "status").text)
        assert not driver.find_element(By.ID, "without-column").is_displayed()

        # a phone-width screen: nothing sticks out sideways
        driver.set_window_size(390, 844)
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        driver.save_screenshot(str(tmp_path / "phone.png"))
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()


def screenshot(checkpoint: str, photo: str, out: str, *serve_args: str, width: int = 1280) -> None:
    """The whole page of ``fgvc serve --checkpoint CHECKPOINT`` after ``photo`` was chosen, as a PNG."""
    import tempfile

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server = Server("--checkpoint", checkpoint, *serve_args)
    with tempfile.TemporaryDirectory() as tmp:
        driver = browser(Path(tmp), width, 1000)
        try:
            wait = WebDriverWait(driver, 120)
            driver.get(server.url + "/")
            wait.until(lambda d: "classes" in d.find_element(By.ID, "model").text)
            driver.find_element(By.ID, "photo").send_keys(str(Path(photo).resolve()))
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li")) >= 5)
            inner = driver.execute_script("return window.outerHeight - window.innerHeight")
            driver.set_window_size(width, driver.execute_script("return document.body.scrollHeight") + inner)
            time.sleep(0.5)
            driver.save_screenshot(out)
        finally:
            driver.quit()
            server.stop()


if __name__ == "__main__":  # python tests/test_page.py CHECKPOINT PHOTO OUT.png [fgvc serve options...]
    screenshot(*sys.argv[1:4], *sys.argv[4:])


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver "
                    "(make test installs them on Debian as root)")
def test_api_docs_render_in_headless_chromium(server, tmp_path):
    """/docs: the locally served Swagger UI renders every route of the OpenAPI document it is given."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser(tmp_path, 1000, 900)
    try:
        driver.get(server.url + "/docs")
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
                                        or d.find_elements(By.CSS_SELECTOR, ".errors-wrapper, .version-pragma"))
        paths = {e.text.strip() for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        problems = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".errors-wrapper, .version-pragma")]
        driver.save_screenshot(str(tmp_path / "docs.png"))
    finally:
        driver.quit()
    assert not problems, problems
    assert {"/v1/predict", "/v1/model", "/healthz"} <= paths, paths
