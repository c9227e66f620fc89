"""End to end: ``gliomaseg serve`` in a subprocess, driven in headless Chromium, checked against ``predict``.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and Selenium (the
``dev`` extra); without them the tests skip, saying so. By default the server runs a real but
randomly initialised U-Net. ``GLIOMASEG_WEB_MODEL=path/best.pt`` runs a trained model instead and
``GLIOMASEG_WEB_SCREENSHOT=file.png`` keeps the screenshot (how docs/figures/web_viewer.png was made).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from gliomaseg.data.io import write_image
from gliomaseg.data.phantoms import synthesise_volume
from gliomaseg.evaluation.metrics import binary_metrics
from gliomaseg.inference.predict import predict_inputs

pytestmark = pytest.mark.web

UPLOAD_LIMIT_MB = 1
SPACING = (0.8, 0.8, 2.5)
_WAIT_S = 60


@dataclass
class Server:
    """The running ``gliomaseg serve``; :meth:`ready` waits for it once (start-up overlaps the fixtures after it)."""

    url: str
    proc: subprocess.Popen
    log: list[str]
    tmp_root: Path | None = None

    def ready(self) -> None:
        if self.tmp_root is None:
            _wait_until_serving(self.url, self.proc, self.log)
            started = re.search(
                r"on http://127\.0\.0\.1:\d+ \(loopback only.*kept in (\S+) \(removed on exit\)", self.log[0]
            )
            assert started, self.log
            self.tmp_root = Path(started.group(1))


@dataclass
class Inputs:
    slice: Path
    nifti: Path
    truth: Path
    areas: pd.DataFrame  # predict's cases.csv for slice and nifti, at the model's threshold
    dice: float  # predict's NIfTI mask against the truth


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("headless Chromium not available: apt-get install chromium chromium-driver (Debian)")
    return browser, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    binary, driver_path = _chromium()
    webdriver = pytest.importorskip("selenium.webdriver", reason="Selenium not installed (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1500"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # to see every request the page makes
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def model(unet_model_file: Path) -> Path:
    return Path(os.environ.get("GLIOMASEG_WEB_MODEL") or unet_model_file)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_serving(url: str, proc: subprocess.Popen, log: list[str]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("gliomaseg serve exited:\n" + "".join(log))
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail("gliomaseg serve did not answer within 90 s:\n" + "".join(log))


@pytest.fixture(scope="module")
def server(model: Path, browser: object) -> Iterator[Server]:
    port = _free_port()
    command = [sys.executable, "-m", "gliomaseg", "serve", "--model", str(model), "--port", str(port)]
    command += ["--quality-calibration", "flip"]  # the page must score as predict does with the same calibration
    proc = subprocess.Popen(
        [*command, "--max-upload-mb", str(UPLOAD_LIMIT_MB)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    server = Server(f"http://127.0.0.1:{port}/", proc, log)
    try:
        yield server
    finally:
        browser.get("about:blank")  # an open page keeps a connection that delays the server's shutdown
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert server.tmp_root is None or not server.tmp_root.exists(), "the server left its temp folder behind"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, model: Path) -> Inputs:
    root = tmp_path_factory.mktemp("web_inputs")
    image, _ = synthesise_volume(np.random.default_rng(11), 9, 64)
    slice_file = write_image(root / "phantom_12.png", image[4])  # 3-channel PNG
    volume, truth = synthesise_volume(np.random.default_rng(12), 12, 64)
    affine = np.diag([*SPACING, 1.0])
    nifti, truth_file = root / "head.nii.gz", root / "head_truth.nii.gz"
    nib.save(nib.Nifti1Image(np.moveaxis(volume[..., 1], 0, 2).astype(np.float32) * 3.7, affine), nifti)
    nib.save(nib.Nifti1Image(np.moveaxis(truth, 0, 2), affine), truth_file)
    areas = predict_inputs(model, [slice_file, nifti], root / "predicted", quality="flip")  # as the server's
    predicted = np.moveaxis(np.asanyarray(nib.load(areas.loc[1, "mask"]).dataobj), 2, 0)
    dice = float(binary_metrics(predicted > 0, truth > 0)["dice"])
    return Inputs(slice_file, nifti, truth_file, areas, dice)


# ------------------------------------------------------------------------------------------ page helpers
def _text(driver, elem_id: str) -> str:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.ID, elem_id)
    return found[0].text if found else ""


def _wait_text(driver, elem_id: str, pattern: str) -> re.Match[str]:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, _WAIT_S).until(lambda d: re.search(pattern, _text(d, elem_id)))
    return re.search(pattern, _text(driver, elem_id))  # type: ignore[return-value]


def _upload(driver, elem_id: str, *paths: Path) -> None:
    """Put ``paths`` into an upload box, first clearing it with its Clear button as a user would."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, f'#{elem_id} button[aria-label="Clear"]'):
        button.click()
        _wait_text(driver, "summary", r"^$")
    driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=file]").send_keys("\n".join(map(str, paths)))


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _open(driver, server: Server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server.ready()
    driver.get(server.url)
    WebDriverWait(driver, _WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#scan-upload input[type=file]"))


# ------------------------------------------------------------------------------------------ tests
def test_page_numbers_equal_predict(browser, server: Server, inputs: Inputs):
    _open(browser, server)
    _upload(browser, "scan-upload", inputs.slice)
    _wait_text(browser, "summary", r"phantom_12 \(slice\)")
    area = _wait_text(browser, "tumour-total", r"^([\d,]+) pixels$")
    assert _number(area.group(1)) == inputs.areas.loc[0, "tumour_voxels"]
    assert _text(browser, "quality").startswith("not scored (one slice")  # blank in cases.csv too
    assert inputs.areas.loc[0, "quality_flag"] == ""

    _upload(browser, "scan-upload", inputs.nifti)
    _wait_text(browser, "summary", r"head \(nifti\)")
    volume = _wait_text(browser, "tumour-total", r"^([\d,.]+) mL \(([\d,]+) voxels\)$")
    assert _number(volume.group(2)) == inputs.areas.loc[1, "tumour_voxels"]
    assert _number(volume.group(1)) == pytest.approx(inputs.areas.loc[1, "tumour_ml"], abs=0.005)
    assert "0.8 × 0.8 × 2.5 mm from the NIfTI header" in _text(browser, "summary")
    quality = _wait_text(browser, "quality", r"^([01]\.\d\d) (ok|check)")  # beside the volume, as in cases.csv
    assert quality.groups() == (f"{inputs.areas.loc[1, 'quality_score']:.2f}", inputs.areas.loc[1, "quality_flag"])

    _upload(browser, "truth-upload", inputs.truth)
    dice = _wait_text(browser, "dice", r"^(\d\.\d{3}|–)")
    assert dice.group(1) == f"{inputs.dice:.3f}"
    keep = os.environ.get("GLIOMASEG_WEB_SCREENSHOT")
    browser.save_screenshot(keep or str(inputs.slice.parent / "web_viewer.png"))


def test_threshold_updates_the_result(browser, server: Server, inputs: Inputs, model: Path, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _open(browser, server)
    _upload(browser, "scan-upload", inputs.nifti)
    _wait_text(browser, "summary", r"head \(nifti\)")
    box = browser.find_element(By.CSS_SELECTOR, "#threshold input[type=number]")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("0.49", Keys.ENTER)
    expected = predict_inputs(model, [inputs.nifti], tmp_path, postprocess={"threshold": 0.49})
    voxels = f"{int(expected.loc[0, 'tumour_voxels']):,} voxels"
    _wait_text(browser, "tumour-total", re.escape(voxels))


def test_bad_uploads_show_a_message_and_the_server_keeps_serving(browser, server: Server, inputs: Inputs, tmp_path):
    from selenium.webdriver.common.by import By

    _open(browser, server)
    (tmp_path / "notes.png").write_text("these are notes, not an image")
    _upload(browser, "scan-upload", tmp_path / "notes.png")
    _wait_text(browser, "status", r"Cannot use this upload\. notes\.png: unreadable or truncated image file")

    (tmp_path / "huge.tif").write_bytes(os.urandom(int(1.5 * UPLOAD_LIMIT_MB * 2**20)))
    _upload(browser, "scan-upload", tmp_path / "huge.tif")
    toast = r"exceed the maximum allowed size of 1(\.0)? ?Mb"
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, _WAIT_S).until(lambda d: re.search(toast, d.find_element(By.TAG_NAME, "body").text))

    _open(browser, server)
    _upload(browser, "scan-upload", inputs.slice)
    _wait_text(browser, "summary", r"phantom_12 \(slice\)")
    _upload(browser, "truth-upload", inputs.truth)
    _wait_text(browser, "status", r"upload its ground truth as mask images|must be mask images")
    assert "phantom_12 (slice)" in _text(browser, "summary")  # the scan's result stays


def test_example_in_one_click_and_no_outside_requests(browser, server: Server):
    from selenium.webdriver.common.by import By

    _open(browser, server)
    browser.find_element(By.ID, "example-patient").click()
    _wait_text(browser, "summary", r"TCGA_SA_P001_\d+ \(patient\)")
    assert re.fullmatch(r"\d\.\d{3}", _text(browser, "dice"))  # the zip's kaggle_3m masks are its ground truth
    requested = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requested.add(message["params"]["request"]["url"])
    outside = [u for u in requested if not u.startswith((server.url, "data:", "blob:", "about:"))]
    assert requested and not outside
