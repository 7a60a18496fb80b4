"""The nail threshold: streamed per-bin counts against figures computed on the maps directly."""

import numpy as np
import pytest
import torch
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
