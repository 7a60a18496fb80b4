"""Tests of nail_segformer.export: ONNX parity with PyTorch and ``predict --onnx``."""

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys

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


def test_predict_with_onnx_imports_neither_torch_nor_transformers(
    tiny_run_dir, exported, photos, tmp_path
):
    # Their imports took longer than the forward passes over a folder of 48 photos (issue 41).
    photo = tmp_path / "photo.png"
    photos[0].save(photo)
    argv = ["--model", str(tiny_run_dir), "--onnx", str(exported[2]), "--input", str(photo)]
    argv += ["--output", str(tmp_path / "out"), "--no_progress"]  # with the default overlays
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['predict', *{argv!r}]\n"
        "try:\n"
        "    runpy.run_module('nail_segformer.predict', run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 0, stop.code\n"
        "heavy = {'torch', 'transformers', 'scipy', 'datasets', 'evaluate', 'albumentations'}\n"
        "print(sorted(heavy & {name.split('.')[0] for name in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "[]"
    assert (tmp_path / "out" / "masks" / "photo.png").is_file()


def test_a_broken_config_beside_an_onnx_file_without_threshold_is_named(
    tiny_run_dir, exported, photos, tmp_path, capsys
):
    import onnx

    bare = onnx.load(str(exported[2]))
    del bare.metadata_props[:]  # no nail_threshold in the file: config.json is read for it
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(tiny_run_dir / "preprocessor_config.json", model)
    (model / "config.json").write_text('{"nail_threshold": 0.4,')  # cut off mid-write
    photo = tmp_path / "photo.png"
    photos[0].save(photo)
    argv = ["--model", str(model), "--onnx", str(tmp_path / "bare.onnx"), "--input", str(photo)]
    assert predict_main([*argv, "--output", str(tmp_path / "out"), "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert f"cannot read {model / 'config.json'}" in err and "Traceback" not in err


def test_export_without_processor_is_a_usage_error(tiny_run_dir, tmp_path, capsys):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_run_dir / name, model_dir)
    assert main(["--model", str(model_dir), "--output", str(tmp_path / "m.onnx")]) == 2
    assert "preprocessor_config.json" in capsys.readouterr().err


# --------------------------------------------------------------------------- the Hub's layout


@pytest.fixture(scope="module")
def folder_export(tiny_run_dir, tmp_path_factory):
    """``(exit code, stdout, folder)`` of ``export --model FOLDER`` on a copy of the tiny run."""
    folder = tmp_path_factory.mktemp("layout") / "nails"
    shutil.copytree(tiny_run_dir, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    (folder / "onnx").mkdir()
    (folder / "onnx" / "stale.onnx").write_text("an earlier export's leftover")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--model", str(folder)])
    return code, out.getvalue(), folder


def test_folder_export_writes_fp32_and_int8_beside_the_model(folder_export):
    code, stdout, folder = folder_export
    assert code == 0, stdout
    assert sorted(p.name for p in (folder / "onnx").iterdir()) == [
        "model.onnx",
        "model_quantized.onnx",
    ]  # replaced whole: the stale file is gone
    assert not list(folder.glob(".onnx-*"))  # no staging folder left behind
    assert (folder / "config.json").is_file() and (folder / "preprocessor_config.json").is_file()
    assert "synthetic hand photos" in stdout and "nail-mask IoU against fp32" in stdout
    fp32, int8 = (folder / "onnx" / name for name in ("model.onnx", "model_quantized.onnx"))
    assert int8.stat().st_size < fp32.stat().st_size


def test_export_elsewhere_writes_config_and_processor(tiny_run_dir, tmp_path):
    out = tmp_path / "nails-onnx"
    assert main(["--model", str(tiny_run_dir), "--output", str(out), "--no_int8"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "config.json", "onnx", "preprocessor_config.json"]
    assert "## ONNX" in (out / "README.md").read_text()  # the run's card, with the section
    assert [p.name for p in (out / "onnx").iterdir()] == ["model.onnx"]


def test_a_hub_id_without_output_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--model", "you/nails"])
    assert stopped.value.code == 2
    assert "--output FOLDER" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_predict_runs_each_file_of_an_export_folder(folder_export, photos, tmp_path, dtype):
    _, _, folder = folder_export
    paths = []
    for index, photo in enumerate(photos):
        paths.append(tmp_path / f"photo{index}.png")
        photo.save(paths[-1])
    out = tmp_path / "out"
    argv = ["--model", str(folder), "--onnx", str(folder), "--dtype", dtype, "--no_progress"]
    assert predict_main([*argv, "--input", *map(str, paths), "--output", str(out)]) == 0
    records = [json.loads(line) for line in (out / "predictions.jsonl").open()]
    assert [r["error"] for r in records] == [None] * len(photos)


def test_dtype_without_an_export_folder_is_a_usage_error(tiny_run_dir, exported, capsys):
    with pytest.raises(SystemExit) as stopped:
        predict_main(["--model", str(tiny_run_dir), "--onnx", str(exported[2]), "--dtype",
                      "int8", "--input", "x", "--output", "y"])  # fmt: skip
    assert stopped.value.code == 2 and "--dtype" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:  # and --dtype without --onnx
        predict_main(["--model", str(tiny_run_dir), "--dtype", "int8", "--input", "x",
                      "--output", "y"])  # fmt: skip
    assert stopped.value.code == 2 and "pass --onnx FOLDER too" in capsys.readouterr().err


# --------------------------------------------------------------------------- quality gate, push


@pytest.fixture(scope="module")
def learned_copy(learned_run_dir, tmp_path_factory):
    """A copy of the learned run (its manifest points into ``learned_run_dir/../data``)."""
    folder = tmp_path_factory.mktemp("gate") / "run"
    shutil.copytree(learned_run_dir, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    return folder, learned_run_dir.parent / "data"


def _export(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


def test_the_gate_scores_both_files_on_the_validation_split_and_the_card_says_so(learned_copy):
    folder, data_root = learned_copy
    code, stdout = _export(["--model", str(folder), "--data_root", str(data_root)])
    assert code == 0, stdout
    gate = re.search(r"quality gate on (\d+) photos with masks: nail IoU fp32 ([\d.]+), int8 "
                     r"([\d.]+); int8 masks against fp32's: IoU ([\d.]+)", stdout)  # fmt: skip
    assert gate, stdout
    photos, fp32, int8, agreement = int(gate[1]), *map(float, gate.groups()[1:])
    manifest = (folder / "split_manifest.csv").read_text().splitlines()
    assert photos == sum(line.endswith(",validation") for line in manifest) > 0
    assert fp32 > 0.75  # the learned model finds the nails
    assert int8 >= fp32 - 0.01 and agreement >= 0.95
    assert (folder / "onnx" / "model_quantized.onnx").is_file()
    card = (folder / "README.md").read_text()
    assert card.count("## ONNX") == 1 and f"nail IoU {fp32:.4f} (fp32)" in card
    assert "`onnx/model_quantized.onnx`" in card and "dtype: 'q8'" in card
    code, _ = _export(["--model", str(folder), "--data_root", str(data_root)])
    assert code == 0 and (folder / "README.md").read_text().count("## ONNX") == 1  # replaced


def test_an_int8_file_that_fails_the_gate_is_left_out(learned_copy, tmp_path, monkeypatch):
    import nail_segformer.export as export

    folder, data_root = learned_copy
    monkeypatch.setattr(export, "GATE_MASK_IOU", 1.01)  # no int8 file can pass
    out = tmp_path / "export"
    code, stdout = _export(["--model", str(folder), "--output", str(out), "--data_root",
                            str(data_root)])  # fmt: skip
    assert code == 0 and "int8 left out" in stdout
    assert [p.name for p in (out / "onnx").iterdir()] == ["model.onnx"]
    assert "`onnx/model_quantized.onnx`" not in (out / "README.md").read_text()


def test_push_publishes_the_onnx_files_and_the_card(learned_copy, tmp_path):
    from support.hub_stub import HubStub

    folder, data_root = learned_copy
    token = "hf_" + "e" * 34
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_TOKEN")}
    with HubStub(expected_token=token) as hub:
        env.update(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_TOKEN=token,
                   HF_HOME=str(tmp_path / "hf_home"))  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "nail_segformer.export", "--model", str(folder),
             "--output", str(tmp_path / "export"), "--push_to_hub", "--hub_model_id", "me/nails"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        (commit,) = hub.commits_to("me/nails")
    assert sorted(commit.files) == ["README.md", "onnx/model.onnx", "onnx/model_quantized.onnx"]
    assert b"## ONNX" in commit.files["README.md"] and b"license" in commit.files["README.md"]


def test_the_gate_scores_a_folder_of_photos_with_their_masks(learned_copy, tmp_path):
    folder, data_root = learned_copy
    out = tmp_path / "export"
    argv = ["--model", str(folder), "--output", str(out), "--images", str(data_root / "Images"),
            "--masks", str(data_root / "Masks")]  # fmt: skip
    code, stdout = _export(argv)
    assert code == 0, stdout
    photos = len(list((data_root / "Images").rglob("*.png")))
    assert f"quality gate on {photos} photos with masks" in stdout
    assert (out / "onnx" / "model_quantized.onnx").is_file()
