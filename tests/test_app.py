"""The demo page: its answers without Gradio, then the page itself through gradio_client and a
headless Chromium (tests/test_app_page.py)."""

import io

import numpy as np
import pytest
from PIL import Image
from support.learnable import render

from nail_segformer.app import MAX_SIDE, analyze, read_upload
from nail_segformer.data import ImageReadError
from nail_segformer.predict import Predictor


@pytest.fixture(scope="module")
def predictor(learned_run_dir):
    return Predictor.from_pretrained(learned_run_dir, device="cpu", batch_size=1)


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("photos") / "hand.png"
    Image.fromarray(render(np.random.default_rng(3))[0]).save(path)
    return path


def test_the_answer_draws_counts_and_measures_the_nails_as_predict(predictor, photo_path):
    image, scale = read_upload(photo_path)
    assert scale == 1.0
    result = analyze(predictor, image, predictor.threshold)
    [expected] = predictor.predict([image])
    assert result.overlay.size == image.size
    np.testing.assert_array_equal(result.mask, expected.mask * 255)
    assert len(result.nails) == expected.n_nails > 0
    for _, area, percent, confidence in result.nails:
        assert area > 0 and 0 < percent < 100
        assert predictor.threshold < confidence <= 1.0  # the mean over pixels above it
    assert [row[0] for row in result.nails] == list(range(1, len(result.nails) + 1))
    # The settings belong to the request: the shared predictor is left as it was.
    analyze(predictor, image, 0.9, mode="slide", tta=True)
    assert (predictor.mode, predictor.tta) == ("resize", False)


def test_a_large_photo_is_answered_at_the_maximum_side(tmp_path):
    path = tmp_path / "large.jpg"
    Image.new("RGB", (MAX_SIDE * 3, MAX_SIDE * 2), (120, 90, 80)).save(path, quality=80)
    image, scale = read_upload(path)
    assert image.size == (MAX_SIDE, round(MAX_SIDE * 2 / 3)) and scale == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"not an image at all", "cannot decode"),
        ("truncated", "cannot decode"),
        ("bomb", "above the cap"),
    ],
)
def test_unreadable_uploads_get_the_packages_message(tmp_path, content, message):
    path = tmp_path / "upload.png"
    if content == "truncated":
        buffer = io.BytesIO()
        Image.new("RGB", (300, 200), (200, 10, 10)).save(buffer, "PNG")
        content = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    elif content == "bomb":
        buffer = io.BytesIO()
        Image.new("1", (30000, 30000)).save(buffer, "PNG")  # 900 MP, a few kB on disk
        content = buffer.getvalue()
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=message):
        read_upload(path)


@pytest.fixture
def in_process(monkeypatch):
    """The command run in this process: its environment and SIGTERM handler are put back."""
    import signal

    for name in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED"):
        monkeypatch.setenv(name, "")
    monkeypatch.setattr(signal, "signal", lambda *_: None)


def test_without_gradio_the_command_says_what_to_install(monkeypatch, capsys, tmp_path, in_process):
    import sys

    from nail_segformer.app.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio raises ImportError
    assert main(["--model", str(tmp_path)]) == 2
    assert "pip install -e '.[app]'" in capsys.readouterr().err


def test_a_model_that_does_not_load_is_a_usage_error(capsys, tmp_path, in_process):
    pytest.importorskip("gradio")
    from nail_segformer.app.cli import main

    assert main(["--model", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "Traceback" not in err
