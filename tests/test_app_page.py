"""The demo page served for real: Gradio's own client, then a headless Chromium, upload photos.

The app runs in a subprocess on a free port of 127.0.0.1 with the learned model of
``tests/support/learnable.py``. Without Gradio (``pip install -e .[app]``), Selenium or
Chromium these tests skip with the reason, except under CI (``CI=true``), where they must run.
"""

import io
import os
import re
import shutil
import sys

import numpy as np
import pytest
from PIL import Image
from support.learnable import render
from support.servers import free_port, serving

from nail_segformer.predict import Predictor


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the demo page's tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def app_url(learned_run_dir, tmp_path_factory):
    try:
        import gradio  # noqa: F401
        import gradio_client  # noqa: F401
    except ImportError:
        _unavailable("Gradio is not installed (pip install -e '.[app]')")
    port = free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    server_tmp = tmp_path_factory.mktemp("server_tmp")  # the server's temporary folder
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": str(server_tmp)}
    command = [sys.executable, "-m", "nail_segformer.app", "--model", str(learned_run_dir),
               "--port", str(port), "--device", "cpu"]  # fmt: skip
    with serving(command, port, log, env=env) as url:
        yield url
    # Uploads and answers lived in the app's own folder, removed when it stopped.
    assert [p.name for p in server_tmp.iterdir()] == [], log.read_text()[-3000:]


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "hand.png"
    Image.fromarray(render(np.random.default_rng(11), size=96)[0]).save(path)
    return path


@pytest.fixture(scope="module")
def expected(learned_run_dir, photo):
    predictor = Predictor.from_pretrained(learned_run_dir, device="cpu")
    [prediction] = predictor.predict([Image.open(photo).convert("RGB")])
    return predictor.threshold, prediction


def _analyze(client, path, threshold):
    from gradio_client import handle_file

    return client.predict(
        handle_file(str(path)), None, threshold, "resize", False, api_name="/analyze"
    )


def test_gradio_client_gets_the_overlay_mask_and_count_of_predict(app_url, photo, expected):
    from gradio_client import Client

    threshold, prediction = expected
    client = Client(app_url, verbose=False)
    overlay, summary, mask, table = _analyze(client, photo, threshold)
    assert Image.open(overlay).size == Image.open(photo).size
    mask = np.asarray(Image.open(mask))
    assert mask.shape == prediction.mask.shape and mask.any()
    np.testing.assert_array_equal(mask > 0, prediction.mask > 0)
    count = int(re.search(r"\*\*(\d+) nail\(s\)\*\*", summary)[1])
    assert count == prediction.n_nails > 0
    assert len(table["data"]) == count


def _bad_uploads(folder):
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 10, 10)).save(buffer, "PNG")
    truncated = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    buffer = io.BytesIO()
    Image.new("1", (30000, 30000)).save(buffer, "PNG")  # 900 MP in a few kB
    files = {"notes.png": b"not an image", "cut.png": truncated, "bomb.png": buffer.getvalue()}
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return {
        folder / "notes.png": "cannot decode",
        folder / "cut.png": "cannot decode",
        folder / "bomb.png": "above the cap",
    }


def test_bad_uploads_get_the_packages_message_and_the_next_photo_is_answered(
    app_url, photo, expected, tmp_path
):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    for path, message in _bad_uploads(tmp_path).items():
        with pytest.raises(Exception, match=message) as raised:
            _analyze(client, path, 0.5)
        assert str(tmp_path) not in str(raised.value)  # no server folder in the message
    overlay, *_ = _analyze(client, photo, expected[0])
    assert Image.open(overlay).size == Image.open(photo).size


def test_a_browser_uploads_a_photo_and_sees_the_nails(app_url, photo, expected, tmp_path):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        _unavailable("Selenium is not installed (pip install -r requirements-dev.txt)")
    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver_path is None:
        _unavailable("no headless Chromium (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1400,1200"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(app_url)
        wait = WebDriverWait(driver, 120)
        button = (By.XPATH, "//button[contains(., 'Find the nails')]")
        wait.until(expected_conditions.element_to_be_clickable(button))  # the page is live
        driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(photo))
        wait.until(expected_conditions.text_to_be_present_in_element(
            (By.TAG_NAME, "body"), photo.stem))  # fmt: skip
        driver.find_element(*button).click()
        image = wait.until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#overlay img"))
        )
        wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", image) > 0)
        width = driver.execute_script("return arguments[0].naturalWidth", image)
        assert width == Image.open(photo).width  # the overlay, at the photo's size
        summary = driver.find_element(By.CSS_SELECTOR, "#summary").text
        assert f"{expected[1].n_nails} nail(s)" in summary
        driver.save_screenshot(str(tmp_path / "page.png"))
    finally:
        driver.quit()
