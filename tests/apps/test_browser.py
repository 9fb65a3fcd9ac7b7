"""End to end in a real browser: ``medclr app`` on the tiny run, Playwright driving Debian's Chromium (never a
downloaded browser) uploads the real SIIM DICOM and a real PTB-XL record, waits for the results on every page,
saves a screenshot of each (pytest's tmp dir, or $MEDCLR_SCREENSHOTS), and checks that no identifying value of the
DICOM (patient name/ID, UIDs, dates, its UID file name ...) appears in the page text."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from medclr.io.phi import PHI_KEYWORDS

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = 90_000
IDLE = """() => !document.querySelector(
    '[data-testid="stStatusWidget"], [data-testid="stSkeleton"], [data-stale="true"]')
    && Array.from(document.images).every(i => i.complete)"""  # the script finished and every element is drawn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def app_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``medclr app`` on a free port, started as its own process group and stopped by that group's id. The tiny
    test run, or ``$MEDCLR_APP_RUN`` (+ ``$MEDCLR_APP_INDEX``) to take screenshots of a real run."""
    if not CHROMIUM.is_file():
        pytest.skip("Debian Chromium is not installed at /usr/bin/chromium (apt-get install chromium); "
                    "the browser test never downloads a browser")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    trained_run = Path(os.environ.get("MEDCLR_APP_RUN") or request.getfixturevalue("trained_run"))
    app_index = Path(os.environ.get("MEDCLR_APP_INDEX") or request.getfixturevalue("app_index"))
    port = _free_port()
    log = tmp_path_factory.mktemp("app_log") / "streamlit.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "medclr", "app", "--run", str(trained_run), "--index", str(app_index),
             "--server.port", str(port), "--server.address", "127.0.0.1"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the app did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the group started above (streamlit is its child)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _secrets(dicom: Path) -> set[str]:
    ds = pydicom.dcmread(dicom)
    values = {str(e.value).strip() for e in (*ds, *ds.file_meta) if e.keyword in PHI_KEYWORDS or e.VR in ("PN", "UI")}
    return {v for v in values if len(v) >= 4} | {dicom.name, dicom.stem}


def test_upload_and_every_page_in_chromium(app_url: str, real_dicom: Path, ptbxl_record: tuple[Path, Path],
                                           tmp_path: Path) -> None:
    from playwright.sync_api import Page, sync_playwright

    shots = Path(os.environ.get("MEDCLR_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    secrets = _secrets(real_dicom)
    assert "16d7f894-55d7-4d95-8957-d18987f0e981" in secrets  # PatientName and PatientID of this file

    def settle(page: Page, text: str) -> None:
        page.get_by_text(text, exact=False).first.wait_for(timeout=WAIT_MS)
        page.wait_for_function(IDLE, timeout=WAIT_MS)
        page.wait_for_timeout(300)
        page.wait_for_function(IDLE, timeout=WAIT_MS)

    def shoot(page: Page, name: str) -> None:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        text = page.inner_text("body")
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"identifying DICOM values on the {name} page: {leaked}"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 3400})
            page.goto(app_url)
            settle(page, "Research use only")
            assert "not for diagnosis" in page.inner_text("body")
            shoot(page, "0_landing")
            page.locator("input[type=file]").first.set_input_files(str(real_dicom))
            settle(page, "Current case (upload): X-ray (DICOM")
            page.get_by_text("Zero-shot probabilities").first.wait_for(timeout=WAIT_MS)
            shoot(page, "1_diagnose_xray")
            page.locator("input[type=file]").first.set_input_files([str(p) for p in ptbxl_record])
            settle(page, "ECG (WFDB, 500 Hz, 10.0 s)")
            page.get_by_text("X-ray and ECG together").wait_for(timeout=WAIT_MS)
            shoot(page, "2_diagnose_xray_ecg")
            page.get_by_role("link", name="Retrieve").click()
            settle(page, "Top 8")
            assert "#1" in page.inner_text("body")
            shoot(page, "3_retrieve")
            page.get_by_role("link", name="Ground").click()
            settle(page, "Best-matching")
            shoot(page, "4_ground")
        finally:
            browser.close()
    assert sorted(p.name for p in shots.glob("*.png"))[:5] == ["0_landing.png", "1_diagnose_xray.png",
                                                               "2_diagnose_xray_ecg.png", "3_retrieve.png",
                                                               "4_ground.png"]
