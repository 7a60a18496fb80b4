"""The nail threshold: streamed per-bin counts against figures computed on the maps directly."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.trainer_utils import EvalPrediction

from nail_segformer.labels import ID2LABEL, IGNORE_INDEX, upsample_logits
from nail_segformer.metrics import StreamingSegmentationMetrics, load_mean_iou
from nail_segformer.metrics.threshold import (
    THRESHOLDS,
    choose_threshold,
    metrics_at_threshold,
    probability_counts,
    threshold_curve,
)
from nail_segformer.predict import Predictor
from nail_segformer.predict.cli import main as predict_main


def _direct(probability: torch.Tensor, labels: torch.Tensor, threshold: torch.Tensor) -> dict:
    """Nail IoU, precision and recall of ``probability > threshold``, from the maps."""
    counted = labels != IGNORE_INDEX
    predicted, true = (probability > threshold) & counted, (labels == 1) & counted
    tp = int((predicted & true).sum())
    fp, fn = int((predicted & ~true).sum()), int((~predicted & true).sum())
    nothing = tp + fp + fn == 0
    return {
        "iou": tp / (tp + fp + fn) if tp + fp + fn else float(nothing),
        "precision": tp / (tp + fp) if tp + fp else float(nothing),
        "recall": tp / (tp + fn) if tp + fn else float(nothing),
    }


def _batches(seed: int = 0):
    """Logits at 1/4 of the label size and labels with ignored pixels, like a SegFormer's."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(3):
        logits = torch.randn(5, 2, 8, 8, generator=generator) * 3
        labels = (torch.rand(5, 32, 32, generator=generator) < 0.2).long()
        labels[torch.rand(5, 32, 32, generator=generator) < 0.05] = IGNORE_INDEX
        yield logits, labels


def test_streamed_figures_equal_the_direct_ones_at_every_bin_edge():
    hook = StreamingSegmentationMetrics(ID2LABEL)
    batches = list(_batches())
    for index, (logits, labels) in enumerate(batches):
        metrics = hook(EvalPrediction(logits, labels), compute_result=index == len(batches) - 1)
    curve = threshold_curve(hook.last_counts.nail_probability)

    probability = torch.cat([upsample_logits(lg, (32, 32)).softmax(1)[:, 1] for lg, _ in batches])
    labels = torch.cat([lb for _, lb in batches])
    for j, edge in enumerate(THRESHOLDS):
        direct = _direct(probability, labels, edge)
        for key, value in direct.items():
            assert curve[key][j] == pytest.approx(value, abs=1e-12), (key, float(edge))
    # Argmax is "P(nail) > 0.5": the edge 0.5 gives the hook's own nail IoU.
    assert curve["iou"][50] == pytest.approx(metrics["iou_nail"], abs=1e-12)
    assert curve["dice"][50] == pytest.approx(metrics["nail_dice"], abs=1e-12)


def test_probabilities_on_an_edge_fall_below_it():
    # The rule is ">": a pixel whose P(nail) is exactly the threshold is background there.
    probability = THRESHOLDS.clone()  # one pixel at each edge
    is_nail = torch.ones_like(probability, dtype=torch.bool)
    curve = threshold_curve(probability_counts(probability, is_nail))
    for j, edge in enumerate(THRESHOLDS):
        expected = int((probability > edge).sum()) / len(probability)
        assert curve["recall"][j] == pytest.approx(expected), float(edge)


def test_the_chosen_threshold_is_the_best_edge_and_a_flat_curve_keeps_argmax():
    generator = torch.Generator().manual_seed(1)
    # Nails the model is unsure of: P(nail) around 0.3; background around 0.1.
    nail = (0.3 + 0.05 * torch.randn(4000, generator=generator)).clamp(0, 1)
    background = (0.1 + 0.05 * torch.randn(20000, generator=generator)).clamp(0, 1)
    probability = torch.cat([nail, background])
    is_nail = torch.cat([torch.ones(4000), torch.zeros(20000)]).bool()
    counts = probability_counts(probability, is_nail)
    threshold, value = choose_threshold(counts)
    direct = [_direct(probability, is_nail.long(), e)["iou"] for e in THRESHOLDS[1:-1]]
    assert value == pytest.approx(max(direct))
    assert 0.15 < threshold < 0.3 and value > metrics_at_threshold(counts, 0.5)["iou_nail"]
    assert metrics_at_threshold(counts, threshold)["iou_nail"] == pytest.approx(value)
    # Recall-heavy F2 picks a lower threshold than precision-heavy F0.5.
    assert choose_threshold(counts, "f2")[0] < choose_threshold(counts, "f0.5")[0]
    # No nail and none predicted anywhere: every edge agrees, argmax stays.
    flat = probability_counts(torch.zeros(100), torch.zeros(100, dtype=torch.bool))
    assert choose_threshold(flat) == (0.5, 1.0)
    with pytest.raises(ValueError, match="threshold metric"):
        choose_threshold(counts, "boundary_iou")
    with pytest.raises(ValueError, match="0.01"):
        metrics_at_threshold(counts, 0.333)


def test_the_evaluate_module_reports_the_figures_at_a_threshold():
    hook = StreamingSegmentationMetrics(ID2LABEL)
    hook.threshold = 0.3
    batches = list(_batches(seed=2))
    for index, (logits, labels) in enumerate(batches):
        metrics = hook(EvalPrediction(logits, labels), compute_result=index == len(batches) - 1)
    expected = metrics_at_threshold(hook.last_counts.nail_probability, 0.3)
    assert metrics["iou_nail_at_threshold"] == expected["iou_nail"]
    assert metrics["nail_recall_at_threshold"] == expected["nail_recall"]
    # The module alone, fed the rows of counts, says the same.
    module = load_mean_iou("counts", keep_in_memory=True)
    module.add_batch(**{k: [v] for k, v in hook.last_counts.to_row().items()})
    alone = module.compute(threshold=0.3)
    assert alone["iou_nail_at_threshold"] == metrics["iou_nail_at_threshold"]
    assert alone["iou_nail"] == metrics["iou_nail"]
    assert np.isfinite(list(alone.values())).all()


# --------------------------------------------------------------------------- a run's threshold


def _results(run_dir) -> dict:
    return json.loads((run_dir / "all_results.json").read_text())


def test_a_run_keeps_its_threshold_in_config_results_and_card(tiny_run_dir):
    from transformers import AutoConfig

    results = _results(tiny_run_dir)
    threshold = results["validation_nail_threshold"]
    assert 0.0 < threshold < 1.0 and round(threshold * 100) == threshold * 100
    # Chosen by nail IoU among edges that include 0.5, the argmax: never below it.
    assert results["validation_iou_nail_at_threshold"] >= results["validation_iou_nail"]
    for key in ("iou_nail", "nail_dice", "nail_precision", "nail_recall"):
        assert f"test_{key}_at_threshold" in results and f"test_{key}" in results
    config = json.loads((tiny_run_dir / "config.json").read_text())
    assert config["nail_threshold"] == threshold
    assert AutoConfig.from_pretrained(tiny_run_dir).nail_threshold == threshold  # reloads
    card = (tiny_run_dir / "README.md").read_text()
    assert f"above **{threshold:.2f}**" in card
    test_iou = results["test_iou_nail_at_threshold"]
    assert re.search(rf"\| IoU \| [\d.]+ \| {test_iou:.4f} \|", card)
    assert "transformers.js take the argmax" in card


def _with_threshold(run_dir, folder, value):
    shutil.copytree(run_dir, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    config = json.loads((folder / "config.json").read_text())
    config["nail_threshold"] = value
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _photos(tmp_path) -> Path:
    from support.learnable import render

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for index in range(3):
        Image.fromarray(render(rng)[0]).save(folder / f"{index}.png")
    return folder


def _predicted_masks(argv, out) -> dict:
    assert predict_main([*argv, "--output", str(out), "--no_progress"]) == 0
    return {p.name: np.asarray(Image.open(p)) for p in sorted((out / "masks").iterdir())}


def test_predict_uses_the_saved_threshold_unless_told_otherwise(learned_run_dir, tmp_path):
    model = _with_threshold(learned_run_dir, tmp_path / "model", 0.9)
    predictor = Predictor.from_pretrained(model, device="cpu")
    assert predictor.threshold == 0.9
    photo = Image.open(next(_photos(tmp_path).iterdir()))
    [prediction] = predictor.predict([photo])
    np.testing.assert_array_equal(prediction.mask, prediction.nail_probability > 0.9)

    argv = ["--model", str(model), "--input", str(tmp_path / "photos"), "--overlay_format", "none"]
    default = _predicted_masks(argv, tmp_path / "default")
    explicit = _predicted_masks([*argv, "--threshold", "0.9"], tmp_path / "explicit")
    argmax = _predicted_masks([*argv, "--threshold", "argmax"], tmp_path / "argmax")
    assert all(np.array_equal(default[k], explicit[k]) for k in default)
    assert any(not np.array_equal(default[k], argmax[k]) for k in default)
    # The run's own threshold, chosen on validation, is what a plain predict uses.
    chosen = json.loads((learned_run_dir / "config.json").read_text())["nail_threshold"]
    assert chosen is not None
    assert Predictor.from_pretrained(learned_run_dir, device="cpu").threshold == chosen


def test_a_bad_saved_threshold_is_a_clean_error(learned_run_dir, tmp_path, capsys):
    model = _with_threshold(learned_run_dir, tmp_path / "model", "high")
    argv = ["--model", str(model), "--input", str(_photos(tmp_path)), "--output", str(tmp_path)]
    assert predict_main(argv) == 2
    err = capsys.readouterr().err
    assert "nail_threshold" in err and "config.json" in err and "'high'" in err
    assert "Traceback" not in err


def test_an_exported_file_carries_the_threshold(tiny_run_dir, tmp_path):
    import onnx

    from nail_segformer.export import main as export_main

    threshold = json.loads((tiny_run_dir / "config.json").read_text())["nail_threshold"]
    path = tmp_path / "model.onnx"
    assert export_main(["--model", str(tiny_run_dir), "--output", str(path)]) == 0
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert float(props["nail_threshold"]) == threshold
    # A folder with only the processor: the file's metadata is where the threshold is found.
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tiny_run_dir / "preprocessor_config.json", bare)
    assert Predictor.from_pretrained(bare, onnx=path, device="cpu").threshold == threshold
    # A folder export writes config.json beside onnx/, threshold included.
    folder = tmp_path / "folder"
    assert export_main(["--model", str(tiny_run_dir), "--output", str(folder), "--no_int8"]) == 0
    assert json.loads((folder / "config.json").read_text())["nail_threshold"] == threshold
    onnx_path = folder / "onnx" / "model.onnx"
    assert Predictor.from_pretrained(folder, onnx=onnx_path, device="cpu").threshold == threshold


def test_a_validation_split_without_nails_keeps_argmax_and_says_so(caplog, tmp_path):
    from types import SimpleNamespace

    from nail_segformer.metrics import SegmentationCounts
    from nail_segformer.train.pipeline import evaluate_splits, save_threshold

    hook = StreamingSegmentationMetrics(ID2LABEL)
    counts = SegmentationCounts.zeros(2)
    counts.nail_probability[0, 10] = 500  # background pixels only: no nail to choose by

    def evaluate(split, metric_key_prefix):
        hook.last_counts = counts
        return {f"{metric_key_prefix}_iou_nail": 1.0}

    trainer = SimpleNamespace(
        compute_metrics=hook, evaluate=evaluate, save_metrics=lambda *a: None, eval_dataset=None
    )
    with caplog.at_level("INFO", logger="nail_segformer.train.pipeline"):
        metrics, threshold = evaluate_splits(trainer, {"validation": [], "test": []})
    assert threshold is None and "nail_threshold" not in metrics["validation"]
    assert "iou_nail_at_threshold" not in metrics["test"] and hook.threshold is None
    assert any("threshold stays argmax" in r.getMessage() for r in caplog.records)
    # Saved as null, which Predictor reads as argmax.
    from transformers import SegformerConfig

    model = SimpleNamespace(config=SegformerConfig(num_labels=2, nail_threshold=0.3))
    save_threshold(model, str(tmp_path), None)
    assert json.loads((tmp_path / "config.json").read_text())["nail_threshold"] is None
