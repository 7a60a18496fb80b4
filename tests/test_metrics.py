"""Tests for nail_segformer.metrics' pixel metrics, the bundled mean_iou evaluate module and the
Trainer hook that streams counts through it (nails and boundaries: test_nail_metrics.py).

The reference numbers come from ``_brute_force_scores``: explicit per-pixel loops that collect the
pixel coordinates of each class into sets, independent of the bincount-based implementations, and
from ``_hub_mean_iou``, the Hub ``mean_iou`` script's histogram algorithm restated.
"""

import inspect
import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers.trainer_utils import EvalPrediction

from nail_segformer.metrics import (
    COUNTS_CONFIG,
    MEAN_IOU_MODULE,
    ConfusionMatrixAccumulator,
    SegmentationCounts,
    StreamingSegmentationMetrics,
    compute_confusion_matrix,
    compute_counts,
    compute_metrics_from_confusion,
    compute_metrics_from_counts,
    load_mean_iou,
)

ID2LABEL = {0: "background", 1: "nail"}
ID2LABEL_3 = {0: "background", 1: "nail", 2: "skin"}
EXPECTED_KEYS = {
    "mean_iou",
    "mean_accuracy",
    "overall_accuracy",
    "iou_background",
    "iou_nail",
    "accuracy_background",
    "accuracy_nail",
    "nail_dice",
    "nail_precision",
    "nail_recall",
}


@pytest.fixture(scope="module")
def mean_iou():
    return load_mean_iou(keep_in_memory=True)


@pytest.fixture(scope="module")
def mean_iou_counts():
    return load_mean_iou(COUNTS_CONFIG, keep_in_memory=True)


def _hub_mean_iou(predictions, references, num_labels, ignore_index, label_map=None, reduce=False):
    """The Hub mean_iou script's algorithm: class histograms of each map, summed, then ratios."""
    bins = {"bins": num_labels, "range": (0, num_labels - 1)}
    intersect, predicted, labelled = (np.zeros(num_labels) for _ in range(3))
    for prediction, reference in zip(predictions, references, strict=True):
        prediction, label = np.array(prediction), np.array(reference)
        if label_map:
            original = label.copy()
            for old, new in label_map.items():
                label[original == old] = new
        if reduce:
            label[label == 0] = 255
            label = label - 1
            label[label == 254] = 255
        kept = label != ignore_index
        prediction, label = prediction[kept], label[kept]
        intersect += np.histogram(prediction[prediction == label], **bins)[0]
        predicted += np.histogram(prediction, **bins)[0]
        labelled += np.histogram(label, **bins)[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = intersect / (predicted + labelled - intersect)
        accuracy = intersect / labelled
        return {
            "mean_iou": np.nanmean(iou),
            "mean_accuracy": np.nanmean(accuracy),
            "overall_accuracy": intersect.sum() / labelled.sum(),
            "per_category_iou": iou,
            "per_category_accuracy": accuracy,
        }


def _brute_force_scores(predictions, references, num_labels, ignore_index):
    """Per-class IoU/accuracy and overall accuracy by set counting; NaN where 0/0."""
    predicted = {c: set() for c in range(num_labels)}
    labelled = {c: set() for c in range(num_labels)}
    for image, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        for (row, col), true_class in np.ndenumerate(reference):
            if true_class == ignore_index or not 0 <= true_class < num_labels:
                continue
            labelled[int(true_class)].add((image, row, col))
            predicted[int(prediction[row, col])].add((image, row, col))
    iou, accuracy = [], []
    for c in range(num_labels):
        both, either = predicted[c] & labelled[c], predicted[c] | labelled[c]
        iou.append(len(both) / len(either) if either else math.nan)
        accuracy.append(len(both) / len(labelled[c]) if labelled[c] else math.nan)
    correct = sum(len(predicted[c] & labelled[c]) for c in range(num_labels))
    counted = sum(len(labelled[c]) for c in range(num_labels))
    return {
        "per_category_iou": np.array(iou),
        "per_category_accuracy": np.array(accuracy),
        "mean_iou": np.nanmean(iou),
        "mean_accuracy": np.nanmean(accuracy),
        "overall_accuracy": correct / counted,
    }


def _random_maps(seed, num_images=3, shape=(6, 7), num_labels=3, ignore_share=0.2):
    rng = np.random.default_rng(seed)
    predictions = [rng.integers(0, num_labels, shape) for _ in range(num_images)]
    references = []
    for _ in range(num_images):
        reference = rng.integers(0, num_labels, shape)
        reference[rng.random(shape) < ignore_share] = 255
        references.append(reference)
    return predictions, references


def _random_eval_batches(seed, batch_sizes=(2, 3, 1), num_classes=2, size=(16, 12)):
    """Logits at 1/4 resolution and labels with 255 and -100 pixels, as the Trainer passes them."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for batch_size in batch_sizes:
        logits = torch.randn(
            batch_size, num_classes, size[0] // 4, size[1] // 4, generator=generator
        )
        labels = torch.randint(0, num_classes, (batch_size, *size), generator=generator)
        labels[torch.rand(labels.shape, generator=generator) < 0.1] = 255
        labels[:, -2:, :] = -100  # padding added by pad_across_processes
        batches.append((logits, labels))
    return batches


def _upsampled_argmax(logits, size):
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False).argmax(dim=1)


# --- the evaluate module ------------------------------------------------------------------------


def test_module_is_plain_package_data():
    assert MEAN_IOU_MODULE.is_file()
    assert not (MEAN_IOU_MODULE.parent.parent / "__init__.py").exists()


def test_module_loads_offline_from_folder_path():
    import evaluate

    module = evaluate.load(str(MEAN_IOU_MODULE.parent), keep_in_memory=True)
    results = module.compute(
        predictions=[np.array([[1, 1], [0, 0]])],
        references=[np.array([[1, 0], [0, 255]])],
        num_labels=2,
        ignore_index=255,
    )
    assert results["mean_iou"] == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_module_matches_brute_force(mean_iou, seed):
    predictions, references = _random_maps(seed)
    results = mean_iou.compute(
        predictions=predictions, references=references, num_labels=3, ignore_index=255
    )
    expected = _brute_force_scores(predictions, references, 3, 255)
    for key, value in expected.items():
        np.testing.assert_allclose(results[key], value, err_msg=key)


def test_module_skips_class_absent_from_both_and_nan_to_num_replaces(mean_iou):
    predictions = [np.array([[0, 1], [1, 0]])]
    references = [np.array([[0, 1], [0, 255]])]
    plain = mean_iou.compute(
        predictions=predictions, references=references, num_labels=3, ignore_index=255
    )
    assert math.isnan(plain["per_category_iou"][2])
    assert plain["mean_iou"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    filled = mean_iou.compute(
        predictions=predictions,
        references=references,
        num_labels=3,
        ignore_index=255,
        nan_to_num=-1,
    )
    assert filled["per_category_iou"][2] == -1
    assert filled["mean_iou"] == plain["mean_iou"]


def test_module_reduce_labels_drops_zero_and_shifts(mean_iou):
    predictions, references = _random_maps(3, num_labels=2)
    # A dataset where 0 is "unlabelled" and 1, 2 are the real classes.
    raw = [np.where(reference == 255, 255, reference + 1) for reference in references]
    raw[0][0, :] = 0
    results = mean_iou.compute(
        predictions=predictions,
        references=raw,
        num_labels=2,
        ignore_index=255,
        reduce_labels=True,
    )
    shifted = [np.where((r == 0) | (r == 255), 255, r - 1) for r in raw]
    expected = _brute_force_scores(predictions, shifted, 2, 255)
    np.testing.assert_allclose(results["per_category_iou"], expected["per_category_iou"])


def test_module_label_map_applies_all_entries_at_once(mean_iou):
    predictions, references = _random_maps(4, num_labels=2)
    results = mean_iou.compute(
        predictions=predictions,
        references=references,
        num_labels=2,
        ignore_index=255,
        label_map={0: 1, 1: 0},
    )
    swapped = [np.where(r == 255, 255, 1 - r) for r in references]
    expected = _brute_force_scores(predictions, swapped, 2, 255)
    np.testing.assert_allclose(results["per_category_iou"], expected["per_category_iou"])


def test_module_counts_out_of_range_values_like_the_hub_script(mean_iou):
    # A reference outside the classes (7) still counts its prediction's area, and a prediction
    # outside them (2, 5) still counts its reference's area, as the Hub's histograms do.
    predictions = [np.array([[0, 1, 2], [1, 5, 0]]), np.array([[1, 1], [0, 0]])]
    references = [np.array([[0, 7, 1], [1, 1, 255]]), np.array([[1, 0], [7, 0]])]
    ours = mean_iou.compute(
        predictions=predictions, references=references, num_labels=2, ignore_index=255
    )
    hub = _hub_mean_iou(predictions, references, 2, 255)
    for key, value in hub.items():
        np.testing.assert_allclose(ours[key], value, rtol=0, atol=1e-15, err_msg=key)


# Hand-made maps: 0 background, 1 nail, 255 ignore; the second image is the first turned round.
_PREDICTED = np.array([[0, 0, 1, 1, 0], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0], [1, 0, 0, 0, 0]])
_TRUE = np.array([[0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [255, 0, 1, 255, 0], [0, 0, 0, 0, 255]])
# The same truth in a data set whose 0 means "unlabelled": 1 background, 2 nail.
_TRUE_UNLABELLED_ZERO = np.where(_TRUE == 255, 255, _TRUE + 1)
_TRUE_UNLABELLED_ZERO[1, 1] = _TRUE_UNLABELLED_ZERO[3, 0] = 0
HAND_MADE_CASES = {
    "ignore index": ({}, _TRUE, 2),
    "absent class": ({}, _TRUE, 3),
    "label_map swap": ({"label_map": {0: 1, 1: 0}}, _TRUE, 2),
    "reduce_labels": ({"reduce_labels": True}, _TRUE_UNLABELLED_ZERO, 2),
}


def _as_the_hub_reads(reference, label_map=None, reduce_labels=False):
    """The reference after the Hub script's label_map and reduce_labels steps."""
    reference = reference.copy()
    if label_map:
        original = reference.copy()
        for old, new in label_map.items():
            reference[original == old] = new
    if reduce_labels:
        reference = np.where((reference == 0) | (reference == 255), 255, reference - 1)
    return reference


@pytest.mark.parametrize("case", list(HAND_MADE_CASES))
def test_counts_form_equals_maps_form_equals_the_hub(mean_iou, mean_iou_counts, case):
    options, truth, num_labels = HAND_MADE_CASES[case]
    predictions, references = [_PREDICTED, np.rot90(_PREDICTED, 2)], [truth, np.rot90(truth, 2)]
    maps = mean_iou.compute(
        predictions=predictions,
        references=references,
        num_labels=num_labels,
        ignore_index=255,
        **options,
    )
    hub = _hub_mean_iou(
        predictions,
        references,
        num_labels,
        255,
        options.get("label_map"),
        options.get("reduce_labels", False),
    )
    for prediction, reference in zip(predictions, references, strict=True):
        counts = compute_counts(prediction, _as_the_hub_reads(reference, **options), num_labels)
        mean_iou_counts.add_batch(**{key: [value] for key, value in counts.to_row().items()})
    id2label = ID2LABEL_3 if num_labels == 3 else ID2LABEL
    counted = mean_iou_counts.compute(id2label=id2label)

    for key in ("mean_iou", "mean_accuracy", "overall_accuracy"):
        assert counted[key] == pytest.approx(maps[key], abs=1e-15) == hub[key], key
    for index, name in id2label.items():
        hub_iou = hub["per_category_iou"][index]
        np.testing.assert_equal(maps["per_category_iou"][index], hub_iou)
        # The counts form reports a class absent from both as 1.0 (finite), the Hub as NaN.
        assert counted[f"iou_{name}"] == pytest.approx(1.0 if math.isnan(hub_iou) else hub_iou)
    if case == "absent class":
        assert math.isnan(maps["per_category_iou"][2]) and counted["iou_skin"] == 1.0


def test_counts_form_of_an_unknown_configuration_is_refused():
    with pytest.raises(ValueError, match="valid: .*'counts'"):
        load_mean_iou("count", keep_in_memory=True)


# --- confusion matrix and metrics -----------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_from_confusion_match_brute_force(seed):
    predictions, references = _random_maps(seed)
    confusion = compute_confusion_matrix(np.stack(predictions), np.stack(references), 3)
    metrics = compute_metrics_from_confusion(confusion, ID2LABEL_3)
    expected = _brute_force_scores(predictions, references, 3, 255)
    assert metrics["mean_iou"] == pytest.approx(expected["mean_iou"])
    assert metrics["mean_accuracy"] == pytest.approx(expected["mean_accuracy"])
    assert metrics["overall_accuracy"] == pytest.approx(expected["overall_accuracy"])
    for index, name in ID2LABEL_3.items():
        assert metrics[f"iou_{name}"] == pytest.approx(expected["per_category_iou"][index])
        assert metrics[f"accuracy_{name}"] == pytest.approx(
            expected["per_category_accuracy"][index]
        )


def test_confusion_matrix_rows_are_labels_and_columns_predictions():
    confusion = compute_confusion_matrix(np.array([1, 1, 0]), np.array([0, 1, 1]), 2)
    np.testing.assert_array_equal(confusion, [[0, 1], [1, 1]])
    assert confusion.dtype == np.int64


def test_confusion_matrix_same_for_torch_and_numpy():
    predictions, references = _random_maps(5)
    predictions, references = np.stack(predictions), np.stack(references)
    from_numpy = compute_confusion_matrix(predictions, references, 3)
    from_torch = compute_confusion_matrix(
        torch.from_numpy(predictions), torch.from_numpy(references), 3
    )
    np.testing.assert_array_equal(from_numpy, from_torch)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int32, np.float32])
def test_confusion_matrix_same_for_every_map_dtype(dtype):
    predictions, references = _random_maps(8, num_labels=2)
    predictions, references = np.stack(predictions), np.stack(references)
    expected = compute_confusion_matrix(predictions, references, 2)
    counted = compute_confusion_matrix(predictions.astype(dtype), references.astype(dtype), 2)
    np.testing.assert_array_equal(counted, expected)
    as_bool = compute_confusion_matrix(predictions.astype(bool), references.astype(dtype), 2)
    np.testing.assert_array_equal(as_bool, expected)


@pytest.mark.parametrize("ignored_value", [255, -100, 7])
def test_confusion_matrix_skips_ignored_and_out_of_range_labels(ignored_value):
    references = np.array([[0, 1, ignored_value]])
    confusion = compute_confusion_matrix(np.array([[0, 1, 1]]), references, 2, ignore_index=255)
    assert confusion.sum() == 2


def test_confusion_matrix_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="upsample logits"):
        compute_confusion_matrix(np.zeros((1, 4, 4)), np.zeros((1, 8, 8)), 2)


def test_confusion_matrix_rejects_out_of_range_predictions():
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\)"):
        compute_confusion_matrix(np.array([0, 2]), np.array([0, 1]), 2)


def test_metric_keys_present_and_in_unit_range():
    predictions, references = _random_maps(6, num_labels=2)
    confusion = compute_confusion_matrix(np.stack(predictions), np.stack(references), 2)
    metrics = compute_metrics_from_confusion(confusion, ID2LABEL)
    assert set(metrics) == EXPECTED_KEYS
    assert all(isinstance(value, float) and 0 <= value <= 1 for value in metrics.values())


def test_positive_class_scores_from_counts():
    # 3 true positives, 1 false positive, 2 false negatives for the nail class.
    confusion = np.array([[10, 1], [2, 3]])
    metrics = compute_metrics_from_confusion(confusion, ID2LABEL)
    assert metrics["nail_precision"] == pytest.approx(3 / 4)
    assert metrics["nail_recall"] == pytest.approx(3 / 5)
    assert metrics["nail_dice"] == pytest.approx(6 / 9)
    assert metrics["iou_nail"] == pytest.approx(3 / 6)


def test_positive_label_none_omits_positive_keys():
    metrics = compute_metrics_from_confusion(np.eye(2, dtype=int), ID2LABEL, positive_label=None)
    assert set(metrics) == EXPECTED_KEYS - {"nail_dice", "nail_precision", "nail_recall"}


@pytest.mark.parametrize(
    ("id2label", "positive_label", "message"),
    [
        ({0: "background", 2: "nail"}, 1, "every class id"),
        ({0: "nail", 1: "nail"}, 1, "unique"),
        (ID2LABEL, 5, r"valid ids: \[0, 1\]"),
    ],
)
def test_bad_label_arguments_are_rejected(id2label, positive_label, message):
    with pytest.raises(ValueError, match=message):
        compute_metrics_from_confusion(np.eye(2, dtype=int), id2label, positive_label)


def test_no_nail_anywhere_gives_perfect_finite_scores():
    # Neither labelled nor predicted: the nail class is skipped in the means, reported as 1.0.
    confusion = compute_confusion_matrix(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), 2)
    metrics = compute_metrics_from_confusion(confusion, ID2LABEL)
    json.dumps(metrics, allow_nan=False)
    assert metrics["iou_nail"] == metrics["nail_dice"] == metrics["nail_recall"] == 1.0
    assert metrics["mean_iou"] == 1.0


def test_nail_only_predicted_scores_zero_and_means_skip_undefined_accuracy():
    predictions = np.zeros((1, 4, 4), dtype=int)
    predictions[0, 0, :2] = 1
    confusion = compute_confusion_matrix(predictions, np.zeros((1, 4, 4)), 2)
    metrics = compute_metrics_from_confusion(confusion, ID2LABEL)
    json.dumps(metrics, allow_nan=False)
    assert metrics["iou_nail"] == metrics["nail_precision"] == metrics["nail_recall"] == 0.0
    assert metrics["accuracy_nail"] == 0.0
    assert metrics["mean_accuracy"] == pytest.approx(14 / 16)  # background only, like nanmean
    assert metrics["mean_iou"] == pytest.approx((14 / 16 + 0.0) / 2)


def test_all_pixels_ignored_gives_zeros_and_warns(caplog):
    confusion = compute_confusion_matrix(np.zeros((1, 3, 3)), np.full((1, 3, 3), 255), 2)
    with caplog.at_level(logging.WARNING, logger="nail_segformer.metrics"):
        metrics = compute_metrics_from_confusion(confusion, ID2LABEL)
    assert set(metrics.values()) == {0.0}
    assert "ignore index" in caplog.text


def test_ignore_index_zero_would_report_nail_recall_as_iou(mean_iou):
    # With ignore_index=0 (the official example's setting) every background pixel is dropped,
    # so false positives on background vanish and "IoU" collapses to recall.
    reference = np.array([[0, 0, 0, 1], [0, 0, 1, 1]])
    prediction = np.array([[1, 1, 0, 1], [0, 0, 0, 1]])  # 2 FP, 2 TP, 1 FN
    example = mean_iou.compute(
        predictions=[prediction], references=[reference], num_labels=2, ignore_index=0
    )
    confusion = compute_confusion_matrix(prediction, reference, 2, ignore_index=255)
    ours = compute_metrics_from_confusion(confusion, ID2LABEL)
    assert example["per_category_iou"][1] == pytest.approx(ours["nail_recall"]) == 2 / 3
    assert ours["iou_nail"] == pytest.approx(2 / 5)


# --- accumulator and Trainer hook -------------------------------------------------------------


def test_accumulator_streaming_equals_one_shot():
    predictions, references = _random_maps(7, num_images=6)
    streamed = ConfusionMatrixAccumulator(ID2LABEL_3)
    for prediction, reference in zip(predictions, references, strict=True):
        streamed.update(prediction, reference)
    one_shot = ConfusionMatrixAccumulator(ID2LABEL_3)
    one_shot.update(np.stack(predictions), np.stack(references))
    np.testing.assert_array_equal(streamed.confusion, one_shot.confusion)
    assert streamed.compute() == one_shot.compute()
    streamed.reset()
    assert streamed.confusion.sum() == 0


def test_hook_has_the_compute_result_argument_the_trainer_checks():
    hook = StreamingSegmentationMetrics(ID2LABEL)
    assert "compute_result" in inspect.signature(hook).parameters


def test_streaming_hook_equals_one_shot_and_evaluate_module(mean_iou):
    batches = _random_eval_batches(0)
    hook = StreamingSegmentationMetrics(ID2LABEL)
    for step, (logits, labels) in enumerate(batches):
        metrics = hook(
            EvalPrediction(predictions=logits, label_ids=labels),
            compute_result=step == len(batches) - 1,
        )
        if step < len(batches) - 1:
            assert metrics == {}

    all_logits = torch.cat([logits for logits, _ in batches]).numpy()
    all_labels = torch.cat([labels for _, labels in batches]).numpy()
    one_shot = StreamingSegmentationMetrics(ID2LABEL)((all_logits, all_labels))
    assert metrics == one_shot

    predicted = _upsampled_argmax(torch.from_numpy(all_logits), all_labels.shape[-2:]).numpy()
    references = np.where(all_labels < 0, 255, all_labels)  # the module's uint16 has no -100
    expected = mean_iou.compute(
        predictions=list(predicted), references=list(references), num_labels=2, ignore_index=255
    )
    assert metrics["mean_iou"] == pytest.approx(expected["mean_iou"])
    assert metrics["mean_accuracy"] == pytest.approx(expected["mean_accuracy"])
    assert metrics["overall_accuracy"] == pytest.approx(expected["overall_accuracy"])
    assert metrics["iou_nail"] == pytest.approx(expected["per_category_iou"][1])


def test_hook_upsamples_like_the_image_processor():
    from transformers.models.segformer.image_processing_pil_segformer import (
        SegformerImageProcessorPil,
    )

    logits, labels = _random_eval_batches(1, batch_sizes=(2,))[0]
    labels = torch.randint(0, 2, labels.shape, generator=torch.Generator().manual_seed(1))
    maps = SegformerImageProcessorPil().post_process_semantic_segmentation(
        SimpleNamespace(logits=logits), target_sizes=[tuple(labels.shape[-2:])] * len(labels)
    )
    expected = compute_metrics_from_counts(compute_counts(torch.stack(maps), labels, 2), ID2LABEL)
    assert StreamingSegmentationMetrics(ID2LABEL)(EvalPrediction(logits, labels)) == expected


def test_hook_scores_through_the_evaluate_module_one_row_of_counts_per_batch(monkeypatch):
    import evaluate

    hook = StreamingSegmentationMetrics(ID2LABEL)
    assert isinstance(hook.metric, evaluate.EvaluationModule)
    assert hook.metric.config_name == COUNTS_CONFIG
    # evaluate imports a copy of the bundled script from its modules cache.
    source = Path(inspect.getsourcefile(type(hook.metric))).read_text()
    assert source == MEAN_IOU_MODULE.read_text()
    added = []
    add_batch = hook.metric.add_batch
    monkeypatch.setattr(
        hook.metric, "add_batch", lambda **rows: added.append(rows) or add_batch(**rows)
    )
    batches = _random_eval_batches(5, batch_sizes=(2, 3, 2))
    for step, batch in enumerate(batches):
        metrics = hook(EvalPrediction(*batch), compute_result=step == len(batches) - 1)
    # A few integers per batch, whatever the batch and image size: never the maps.
    assert [len(rows["confusion"]) for rows in added] == [1, 1, 1]
    assert all(len(rows["confusion"][0]) == 4 for rows in added)
    assert len(hook.metric) == 0  # compute() emptied it for the next evaluation
    assert metrics["iou_nail"] == pytest.approx(
        compute_metrics_from_confusion(
            sum(
                compute_confusion_matrix(_upsampled_argmax(logits, labels.shape[-2:]), labels, 2)
                for logits, labels in batches
            ),
            ID2LABEL,
        )["iou_nail"],
        abs=0,
    )


def test_hook_reset_drops_an_interrupted_evaluation():
    interrupted, first, second = _random_eval_batches(6, batch_sizes=(2, 2, 2))
    hook = StreamingSegmentationMetrics(ID2LABEL)
    hook(EvalPrediction(*interrupted), compute_result=False)
    hook.reset()
    hook(EvalPrediction(*first), compute_result=False)
    after_reset = hook(EvalPrediction(*second), compute_result=True)
    fresh = StreamingSegmentationMetrics(ID2LABEL)
    fresh(EvalPrediction(*first), compute_result=False)
    assert after_reset == fresh(EvalPrediction(*second), compute_result=True)


def test_segmentation_counts_survive_the_module_row_format():
    predictions, references = _random_maps(9, num_images=3, num_labels=2)
    per_image = [
        compute_counts(p, r, 2, min_nail_area=1)
        for p, r in zip(predictions, references, strict=True)
    ]
    rows = [counts.to_row() for counts in per_image]
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    summed = SegmentationCounts.from_columns(columns)
    expected = per_image[0] + per_image[1] + per_image[2]
    assert summed.to_row() == expected.to_row()
    assert expected.images == 3 and expected.confusion.sum() == sum(
        c.confusion.sum() for c in per_image
    )


def test_hook_takes_first_element_of_prediction_tuple():
    logits, labels = _random_eval_batches(2, batch_sizes=(2,))[0]
    hook = StreamingSegmentationMetrics(ID2LABEL)
    from_tuple = hook(EvalPrediction((logits, torch.zeros(1)), labels), compute_result=True)
    assert from_tuple == hook(EvalPrediction(logits, labels), compute_result=True)


@pytest.mark.parametrize("ignore_value", [255, -100])
def test_hook_ignores_ignored_pixels(ignore_value):
    logits, labels = _random_eval_batches(3, batch_sizes=(2,))[0]
    labels = labels.clamp(min=0, max=1)
    labels[:, :6] = ignore_value
    flipped = logits.clone()
    # Low-resolution row 0 reaches label rows 0-5 through bilinear upsampling, all ignored.
    flipped[:, :, :1] = -flipped[:, :, :1]
    changed = _upsampled_argmax(logits, (16, 12)) != _upsampled_argmax(flipped, (16, 12))
    assert changed.any() and not changed[:, 6:].any()
    hook = StreamingSegmentationMetrics(ID2LABEL)
    assert hook(EvalPrediction(logits, labels)) == hook(EvalPrediction(flipped, labels))


def test_hook_resets_between_evaluations():
    first, second = _random_eval_batches(4, batch_sizes=(2, 2))
    hook = StreamingSegmentationMetrics(ID2LABEL)
    hook(EvalPrediction(*first), compute_result=True)
    again = hook(EvalPrediction(*second), compute_result=True)
    assert again == StreamingSegmentationMetrics(ID2LABEL)(EvalPrediction(*second))


def test_hook_counts_integer_class_maps_as_they_are():
    labels = torch.randint(0, 2, (2, 8, 8), generator=torch.Generator().manual_seed(5))
    hook = StreamingSegmentationMetrics(ID2LABEL)
    assert hook(EvalPrediction(labels.clone(), labels))["mean_iou"] == 1.0


@pytest.mark.parametrize("batch_eval_metrics", [True, False])
def test_hook_inside_trainer(tmp_path, batch_eval_metrics):
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        Trainer,
        TrainingArguments,
    )

    torch.manual_seed(0)
    config = SegformerConfig(
        num_encoder_blocks=1,
        depths=[1],
        sr_ratios=[1],
        hidden_sizes=[8],
        num_attention_heads=[1],
        mlp_ratios=[1],
        decoder_hidden_size=8,
        id2label=ID2LABEL,
        label2id={name: index for index, name in ID2LABEL.items()},
        semantic_loss_ignore_index=255,
    )
    model = SegformerForSemanticSegmentation(config).eval()
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(5, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 2, (5, 32, 32), generator=generator)
    labels[:, :3] = 255
    dataset = [
        {"pixel_values": p, "labels": lab} for p, lab in zip(pixel_values, labels, strict=True)
    ]
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_eval_batch_size=2,
        batch_eval_metrics=batch_eval_metrics,
        report_to="none",
        use_cpu=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        eval_dataset=dataset,
        compute_metrics=StreamingSegmentationMetrics(ID2LABEL),
    )
    added = []
    add_batch = trainer.compute_metrics.metric.add_batch
    trainer.compute_metrics.metric.add_batch = lambda **rows: (
        added.append(rows) or add_batch(**rows)
    )
    metrics = trainer.evaluate()

    with torch.no_grad():
        logits = model(pixel_values=pixel_values).logits
    maps = _upsampled_argmax(logits, (32, 32))
    # The pixel metrics of the confusion-matrix implementation, to the last digit.
    before = compute_metrics_from_confusion(compute_confusion_matrix(maps, labels, 2), ID2LABEL)
    assert {key: metrics[f"eval_{key}"] for key in before} == before
    expected = compute_metrics_from_counts(compute_counts(maps, labels, 2), ID2LABEL)
    assert {key: metrics[f"eval_{key}"] for key in expected} == expected
    assert len(added) == (3 if batch_eval_metrics else 1)  # 5 images, 2 per batch
