"""Tests of nail_segformer.export: ONNX parity with PyTorch and ``predict --onnx``."""

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxruntime")

from nail_segformer.export import main  # noqa: E402
from nail_segformer.predict import Predictor  # noqa: E402
from nail_segformer.predict.cli import main as predict_main  # noqa: E402
from nail_segformer.synthetic import render_sample  # noqa: E402

# Where the nail probability is this close to 0.5, the argmax may differ between any two
# float implementations (ONNX vs torch logits differ by ~1e-8 on the smoke model).
_TIE = 1e-5


@pytest.fixture(scope="module")
def exported(tiny_run_dir, tmp_path_factory):
    """``(exit code, stdout, onnx path)`` of one export of the tiny run."""
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--model", str(tiny_run_dir), "--output", str(path)])
    return code, out.getvalue(), path


@pytest.fixture(scope="module")
def photos():
    sizes = [(96, 64), (50, 70), (64, 64)]
    return [render_sample(5, i, "2", size=(128, 128)).image.resize(s) for i, s in enumerate(sizes)]


def test_export_succeeds_and_reports_differences(exported):
    code, stdout, path = exported
    assert code == 0
    assert path.is_file()
    diffs = [float(line.rsplit(": ", 1)[1]) for line in stdout.splitlines() if "max |" in line]
    assert len(diffs) == 3  # two random sizes and one photo
    assert max(diffs) < 1e-4


def test_export_has_dynamic_batch_height_and_width(exported):
    import onnx

    model = onnx.load(str(exported[2]))
    [graph_input] = model.graph.input
    assert graph_input.name == "pixel_values"
    dims = graph_input.type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [True, False, True, True]
    assert [o.name for o in model.graph.output] == ["logits"]


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (3, 3, 96, 40)])
def test_onnx_logits_match_torch_at_several_sizes(tiny_run_dir, exported, shape):
    import onnxruntime as ort
    from transformers import SegformerForSemanticSegmentation

    from nail_segformer.export import compare_with_torch

    model = SegformerForSemanticSegmentation.from_pretrained(tiny_run_dir)
    session = ort.InferenceSession(str(exported[2]), providers=["CPUExecutionProvider"])
    pixel_values = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    assert compare_with_torch(model, session, pixel_values) < 1e-3


def test_predict_with_onnx_gives_the_torch_masks(tiny_run_dir, exported, photos):
    torch_predictor = Predictor.from_pretrained(tiny_run_dir, device="cpu")
    onnx_predictor = Predictor.from_pretrained(tiny_run_dir, device="cpu", onnx=exported[2])
    for a, b in zip(torch_predictor.predict(photos), onnx_predictor.predict(photos), strict=True):
        np.testing.assert_allclose(a.nail_probability, b.nail_probability, atol=1e-6)
        differs = a.mask != b.mask
        assert (np.abs(a.nail_probability[differs] - 0.5) < _TIE).all()
        assert a.n_nails == b.n_nails or differs.any()


def test_predict_cli_accepts_onnx(tiny_run_dir, exported, photos, tmp_path):
    photo = tmp_path / "photo.png"
    photos[0].save(photo)
    out = tmp_path / "out"
    argv = ["--model", str(tiny_run_dir), "--onnx", str(exported[2]), "--input", str(photo)]
    assert predict_main([*argv, "--output", str(out), "--no_progress"]) == 0
    [record] = [json.loads(line) for line in (out / "predictions.jsonl").open()]
    assert (record["width"], record["height"]) == photos[0].size
    assert Image.open(out / record["mask"]).size == photos[0].size


def test_export_without_processor_is_a_usage_error(tiny_run_dir, tmp_path, capsys):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_run_dir / name, model_dir)
    assert main(["--model", str(model_dir), "--output", str(tmp_path / "m.onnx")]) == 2
    assert "preprocessor_config.json" in capsys.readouterr().err
