"""Per-nail detection and boundary IoU (nail_segformer.metrics.nails, .boundary, .counts).

Hand-made masks with answers worked out by hand in the comments; the boundary band is checked
against the paper's own procedure (d erosions by a 3x3 square after zero padding), restated here
with scipy instead of the cv2 call the package makes.
"""

import numpy as np
import pytest
import torch
from scipy import ndimage
from transformers.trainer_utils import EvalPrediction

from nail_segformer.metrics import (
    SIZE_BUCKETS,
    StreamingSegmentationMetrics,
    boundary_counts,
    boundary_width,
    compute_counts,
    compute_metrics_from_counts,
    count_nails,
    inner_boundary,
    match_nails,
    size_buckets,
)

ID2LABEL = {0: "background", 1: "nail"}


def _metrics(predicted, true, **kwargs):
    return compute_metrics_from_counts(compute_counts(predicted, true, 2, **kwargs), ID2LABEL)


def _rectangles(shape, *boxes):
    mask = np.zeros(shape, dtype=np.uint8)
    for top, left, height, width in boxes:
        mask[top : top + height, left : left + width] = 1
    return mask


# A 100x100 photo (10,000 px): a large nail (400 px, 4%), a medium one (64 px, 0.64%) and a
# small one (12 px, 0.12%); the minimum nail area there is 1 px.
LARGE, MEDIUM, SMALL = (10, 10, 20, 20), (50, 50, 8, 8), (80, 80, 3, 4)


def test_one_missed_small_nail():
    true = _rectangles((100, 100), LARGE, MEDIUM, SMALL)
    predicted = _rectangles((100, 100), LARGE, MEDIUM)
    metrics = _metrics(predicted, true)
    assert metrics["nail_detection_precision"] == 1.0  # 2 of 2 predicted nails are real
    assert metrics["nail_detection_recall"] == pytest.approx(2 / 3)
    assert metrics["nail_detection_f1"] == pytest.approx(2 * 2 / (2 + 3))
    assert metrics["nail_detection_recall_small"] == 0.0
    assert metrics["nail_detection_recall_medium"] == metrics["nail_detection_recall_large"] == 1.0
    assert [metrics[f"true_nails_{size}"] for size in SIZE_BUCKETS] == [1.0, 1.0, 1.0]
    assert metrics["nail_count_error"] == 1.0
    assert metrics["iou_nail"] == pytest.approx(464 / 476)  # the pixel IoU barely notices


def test_two_touching_nails_predicted_as_one():
    # Two 10x10 nails two columns apart; the prediction fills the gap: one 10x22 blob whose IoU
    # with either nail is 100 / 220 < 0.5, so nothing matches.
    true = _rectangles((64, 64), (20, 10, 10, 10), (20, 22, 10, 10))
    predicted = _rectangles((64, 64), (20, 10, 10, 22))
    metrics = _metrics(predicted, true)
    assert metrics["iou_nail"] == pytest.approx(200 / 220)
    assert metrics["nail_detection_precision"] == metrics["nail_detection_recall"] == 0.0
    assert metrics["nail_detection_f1"] == 0.0
    assert metrics["nail_count_error"] == 1.0  # 1 predicted, 2 true


def test_a_nail_predicted_twice_as_long_matches_at_iou_one_half():
    true = _rectangles((64, 64), (20, 10, 10, 10))
    matching = match_nails(_rectangles((64, 64), (20, 10, 10, 20)), true)
    assert matching.pairs.tolist() == [[0, 0]] and matching.ious.tolist() == [0.5]
    too_long = match_nails(_rectangles((64, 64), (20, 10, 10, 21)), true)
    assert too_long.pairs.tolist() == []


def test_mask_shifted_by_one_pixel_keeps_pixel_iou_and_loses_boundary_iou():
    # 128x128: band width round(0.02 * 181.02) = 4. A 40x40 nail has a band of
    # 40^2 - 32^2 = 576 px; shifted right by one column the two bands share
    # 40 * 39 - 32 * 33 = 504 px, so boundary IoU = 504 / (2 * 576 - 504) = 504 / 648.
    true = _rectangles((128, 128), (40, 40, 40, 40))
    predicted = _rectangles((128, 128), (40, 41, 40, 40))
    metrics = _metrics(predicted, true)
    assert metrics["iou_nail"] == pytest.approx(1560 / 1640)  # 0.951
    assert metrics["boundary_iou_nail"] == pytest.approx(504 / 648)  # 0.778
    assert metrics["nail_detection_f1"] == 1.0


def test_empty_image_pair_is_perfect_agreement():
    empty = np.zeros((32, 32), dtype=np.uint8)
    metrics = _metrics(empty, empty)
    assert metrics["boundary_iou_nail"] == metrics["iou_nail"] == 1.0
    for key in ("precision", "recall", "f1", "recall_small", "recall_medium", "recall_large"):
        assert metrics[f"nail_detection_{key}"] == 1.0, key
    assert metrics["nail_count_error"] == 0.0


def test_nails_predicted_on_an_empty_photo_score_zero():
    empty = np.zeros((100, 100), dtype=np.uint8)
    metrics = _metrics(_rectangles((100, 100), SMALL), empty)
    assert metrics["boundary_iou_nail"] == 0.0
    assert metrics["nail_detection_precision"] == metrics["nail_detection_recall"] == 0.0
    assert metrics["nail_detection_recall_small"] == 0.0  # a small nail was predicted
    assert metrics["nail_detection_recall_large"] == 1.0  # no large nail either side


def test_every_pixel_ignored_scores_zero():
    predicted = _rectangles((32, 32), (4, 4, 8, 8))
    metrics = _metrics(predicted, np.full((32, 32), 255))
    assert metrics["boundary_iou_nail"] == metrics["nail_detection_f1"] == 0.0
    assert metrics["mean_iou"] == 0.0


def test_nails_predicted_on_ignored_pixels_do_not_count():
    true = _rectangles((64, 64), (10, 10, 10, 10))
    predicted = _rectangles((64, 64), (10, 10, 10, 10), (40, 40, 10, 10))
    true[35:55, 35:55] = 255  # the second predicted nail lies on ignored pixels
    metrics = _metrics(predicted, true)
    assert metrics["nail_detection_precision"] == metrics["boundary_iou_nail"] == 1.0
    assert metrics["nail_count_error"] == 0.0


def test_specks_below_the_minimum_area_are_not_nails():
    true = _rectangles((100, 100), LARGE)
    predicted = _rectangles((100, 100), LARGE, (70, 70, 1, 2))
    assert _metrics(predicted, true, min_nail_area=3)["nail_detection_precision"] == 1.0
    assert _metrics(predicted, true, min_nail_area=1)["nail_detection_precision"] == 0.5


def test_count_nails_uses_8_connectivity_and_the_minimum_area():
    mask = np.zeros((6, 6), dtype=np.uint8)
    mask[0, 0] = mask[1, 1] = 1  # diagonal neighbours: one component of 2 px
    mask[4, 4] = 1
    assert count_nails(mask, min_area=1) == 2
    assert count_nails(mask, min_area=2) == 1


@pytest.mark.parametrize(
    ("area", "bucket"), [(19, "small"), (20, "medium"), (99, "medium"), (100, "large")]
)
def test_size_bucket_bounds_are_shares_of_the_photo(area, bucket):
    # 10,000 px: small below 0.2% (20 px), large from 1% (100 px).
    assert SIZE_BUCKETS[int(size_buckets(np.array([area]), 10_000)[0])] == bucket


def test_matching_is_one_to_one_and_at_iou_one_half_or_more():
    rng = np.random.default_rng(0)
    for _ in range(20):
        true = ndimage.binary_opening(rng.random((48, 48)) < 0.45).astype(np.uint8)
        predicted = np.roll(true, rng.integers(-2, 3, size=2), axis=(0, 1))
        predicted[rng.random(predicted.shape) < 0.05] ^= 1
        matching = match_nails(predicted, true, min_area=1)
        assert (
            len(set(matching.pairs[:, 0])) == len(set(matching.pairs[:, 1])) == len(matching.pairs)
        )
        assert (matching.ious >= 0.5).all()


@pytest.mark.parametrize(("height", "width", "expected"), [(512, 512, 14), (64, 64, 2), (9, 9, 1)])
def test_boundary_width_is_two_percent_of_the_diagonal(height, width, expected):
    assert boundary_width(height, width) == expected


@pytest.mark.parametrize("width", [1, 2, 5])
def test_inner_boundary_equals_the_papers_repeated_3x3_erosion(width):
    rng = np.random.default_rng(width)
    mask = ndimage.binary_closing(rng.random((40, 56)) < 0.6, iterations=2)
    mask[:, :3] = True  # touches the image border, which counts as a contour
    padded = np.pad(mask, 1)
    eroded = ndimage.binary_erosion(padded, np.ones((3, 3)), iterations=width, border_value=0)
    expected = mask & ~eroded[1:-1, 1:-1]
    np.testing.assert_array_equal(inner_boundary(mask, width), expected)


def test_boundary_counts_are_symmetric_and_bounded():
    true = _rectangles((64, 64), (5, 5, 30, 20))
    predicted = _rectangles((64, 64), (8, 3, 28, 25))
    intersection, union = boundary_counts(predicted, true)
    assert (intersection, union) == boundary_counts(true, predicted)
    assert 0 < intersection < union


def test_counts_of_a_batch_equal_the_sum_of_its_images():
    rng = np.random.default_rng(3)
    true = (rng.random((4, 40, 40)) < 0.02).astype(np.uint8)
    true = np.stack([ndimage.binary_dilation(t, iterations=2) for t in true]).astype(np.uint8)
    predicted = np.roll(true, 1, axis=2)
    batch = compute_counts(predicted, true, 2)
    images = [compute_counts(p, t, 2) for p, t in zip(predicted, true, strict=True)]
    assert batch.to_row() == sum(images[1:], images[0]).to_row()
    assert batch.true_nails.sum() > 4 and batch.boundary_union > 0


def test_streaming_hook_equals_one_shot_for_nail_metrics():
    generator = torch.Generator().manual_seed(0)
    # Smooth random fields: nails are the blobs of one, logits a noisy copy at 1/4 resolution.
    field = torch.randn(6, 1, 6, 6, generator=generator)
    labels = (torch.nn.functional.interpolate(field, size=(24, 24), mode="bilinear") > 0.7)[:, 0]
    noisy = field + 0.8 * torch.randn(field.shape, generator=generator)
    logits = torch.cat([0.7 - noisy, noisy - 0.7], dim=1)
    hook = StreamingSegmentationMetrics(ID2LABEL)
    for start, stop in ((0, 2), (2, 5), (5, 6)):
        streamed = hook(
            EvalPrediction(logits[start:stop], labels[start:stop].long()),
            compute_result=stop == 6,
        )
    one_shot = StreamingSegmentationMetrics(ID2LABEL)(EvalPrediction(logits, labels.long()))
    assert streamed == one_shot
    upsampled = torch.nn.functional.interpolate(
        logits, size=(24, 24), mode="bilinear", align_corners=False
    ).argmax(1)
    expected = compute_metrics_from_counts(compute_counts(upsampled, labels.long(), 2), ID2LABEL)
    assert streamed == expected
    true_nails = sum(streamed[f"true_nails_{size}"] for size in SIZE_BUCKETS)
    assert true_nails >= 6 and 0 < streamed["nail_detection_recall"] < 1  # not a trivial case


@pytest.mark.parametrize("score", [match_nails, boundary_counts])
def test_masks_of_different_shapes_are_refused(score):
    with pytest.raises(ValueError, match="resize the prediction"):
        score(np.zeros((8, 8)), np.zeros((8, 9)))
