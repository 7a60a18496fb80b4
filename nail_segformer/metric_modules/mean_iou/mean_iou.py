"""Segmentation metrics as an ``evaluate`` module: the Hub's ``mean_iou``, and nail_segformer's.

Load it offline with ``evaluate.load(<path to this file or its folder>)``
(``nail_segformer.metrics.load_mean_iou`` does that). Two configurations:

- ``default``: a drop-in for the Hub's ``evaluate.load("mean_iou")``: same arguments, same output
  keys, same dataset-level definition, given class maps.
- ``counts``: streaming. Each example is a ``nail_segformer.metrics.SegmentationCounts`` row (a
  few integers per image or batch, from ``compute_counts``), so memory stays flat however many
  images are added; ``compute()`` returns every metric of the package (pixel IoU, Dice,
  precision, recall, nail detection, boundary IoU). The Trainer hook of nail_segformer uses it.

``evaluate`` copies this script into its modules cache and imports it from there, so it imports
the installed ``nail_segformer`` absolutely, never relatively: the formulas live there once.
"""

import datasets
import evaluate
import numpy as np

from nail_segformer.labels import ID2LABEL, NAIL
from nail_segformer.metrics import (
    SegmentationCounts,
    compute_class_scores,
    compute_confusion_matrix,
    compute_metrics_from_counts,
    counts_features,
)

_CONFIGS = ("default", "counts")

_DESCRIPTION = """\
Intersection-over-Union (IoU, Jaccard index) of each class, and their mean over classes.

For class c, IoU = |pred == c and ref == c| / |pred == c or ref == c|. Pixel areas are summed over
all images before dividing (dataset-level IoU, not a mean of per-image IoUs). Pixels whose
reference equals `ignore_index` are dropped. A class absent from both predictions and references
has IoU 0/0 = NaN and is left out of the mean (nanmean); the same holds for accuracies.

The `counts` configuration takes nail_segformer's per-image counts instead of maps and also
reports per-nail detection (nails = 8-connected components, matched one to one at IoU >= 0.5)
and boundary IoU (Cheng et al., CVPR 2021; inner bands of 2% of the image diagonal).
"""

_KWARGS_DESCRIPTION = """
Args (configuration `default`):
    predictions (`list` of 2-D integer arrays): predicted class index per pixel, one map per image.
    references (`list` of 2-D integer arrays): ground-truth class index per pixel, same shapes.
        Values are stored as uint16: map negative padding such as -100 to `ignore_index` first.
    num_labels (`int`): number of classes; class indices are 0 .. num_labels - 1.
    ignore_index (`int`): reference value whose pixels are dropped (e.g. 255).
    nan_to_num (`int` or `float`, *optional*): if given, every NaN in the output is replaced by it.
    label_map (`dict[int, int]`, *optional*): old -> new id mapping applied to the references
        before anything else. Every entry looks at the original ids, so swaps such as
        {0: 1, 1: 0} work.
    reduce_labels (`bool`, default False): for datasets whose 0 means "unlabelled": reference 0
        becomes 255 and every other reference id is decreased by 1 (255 stays 255). Applied after
        `label_map`. Predictions are never changed.

Args (configuration `counts`):
    confusion, boundary_intersection, boundary_union, true_nails, predicted_nails,
    matched_nails, count_error, images, nail_probability: the fields of
        `SegmentationCounts.to_row()`, one row per image or batch, e.g.
        `module.add_batch(**{k: [v] for k, v in row.items()})`.
    id2label (`dict[int, str]`, *optional*): class names, default {0: background, 1: nail}.
    positive_label (`int` or None, default 1): the nail class; None gives pixel metrics only.
    threshold (`float`, *optional*): a nail threshold (0.00, 0.01, ..., 1.00); the nail's pixel
        figures at it are added as `iou_nail_at_threshold`, `nail_dice_at_threshold`, ...

Returns (configuration `default`):
    `dict`:
    - `mean_iou` (`float`): mean of the per-class IoUs, NaN classes skipped.
    - `mean_accuracy` (`float`): mean of the per-class accuracies (recall), NaN classes skipped.
    - `overall_accuracy` (`float`): correctly classified pixels / counted pixels.
    - `per_category_iou` (`ndarray` of shape (num_labels,)): IoU of each class.
    - `per_category_accuracy` (`ndarray` of shape (num_labels,)): accuracy (recall) of each class.

Predictions or references outside 0 .. num_labels - 1 (and not `ignore_index`) belong to no class:
they add to no class area, so such a reference pixel still counts its prediction's area.

Returns (configuration `counts`): the finite floats of
    `nail_segformer.metrics.compute_metrics_from_counts` (`iou_nail`, `mean_iou`,
    `boundary_iou_nail`, `nail_detection_f1`, ...).

Examples:
    >>> import numpy as np
    >>> mean_iou = evaluate.load("path/to/mean_iou.py")
    >>> predicted = [np.array([[1, 1], [0, 0]])]
    >>> ground_truth = [np.array([[1, 0], [0, 255]])]
    >>> results = mean_iou.compute(predictions=predicted, references=ground_truth,
    ...                            num_labels=2, ignore_index=255)
    >>> round(float(results["mean_iou"]), 4)
    0.5
"""

_CITATION = """\
@inproceedings{cheng2021boundary,
  title={Boundary {IoU}: Improving Object-Centric Image Segmentation Evaluation},
  author={Cheng, Bowen and Girshick, Ross and Doll{\\'a}r, Piotr and Berg, Alexander C. and
          Kirillov, Alexander},
  booktitle={CVPR},
  year={2021}
}
"""


def _remap(reference: np.ndarray, label_map: dict) -> np.ndarray:
    # Look the new ids up from the untouched reference so that chained or swapped entries
    # do not feed into each other.
    remapped = reference.copy()
    for old_id, new_id in label_map.items():
        remapped[reference == int(old_id)] = int(new_id)
    return remapped


def _shift_down(reference: np.ndarray) -> np.ndarray:
    # 0 is "unlabelled" in such datasets: it joins the ignore value 255, which must stay 255.
    shifted = reference - 1
    shifted[(reference == 0) | (reference == 255)] = 255
    return shifted


def _hub_confusion(prediction, reference, num_labels, ignore_index, label_map, reduce_labels):
    """(num_labels + 1)^2 counts of one image; the extra class holds out-of-range values."""
    prediction = np.asarray(prediction, dtype=np.int64)
    reference = np.asarray(reference, dtype=np.int64)
    if prediction.shape != reference.shape:
        raise ValueError(
            f"prediction shape {prediction.shape} != reference shape {reference.shape}: "
            "resize predictions to the reference size before computing mean_iou"
        )
    if label_map:
        reference = _remap(reference, label_map)
    if reduce_labels:
        reference = _shift_down(reference)
    outside = num_labels
    reference = np.where(
        reference == ignore_index,
        -1,  # negative references are never counted
        np.where((reference >= 0) & (reference < num_labels), reference, outside),
    )
    prediction = np.where((prediction >= 0) & (prediction < num_labels), prediction, outside)
    return compute_confusion_matrix(prediction, reference, num_labels + 1, ignore_index=-1)


def _mean_iou(predictions, references, num_labels, ignore_index, label_map, reduce_labels):
    confusion = np.zeros((num_labels + 1, num_labels + 1), dtype=np.int64)
    for prediction, reference in zip(predictions, references, strict=True):
        confusion += _hub_confusion(
            prediction, reference, num_labels, ignore_index, label_map, reduce_labels
        )
    # A class's predicted area includes pixels whose reference is out of range, and its
    # labelled area those whose prediction is: the Hub script's histograms count them so.
    intersection = np.diag(confusion)[:num_labels]
    predicted = confusion[:, :num_labels].sum(axis=0)
    labelled = confusion[:num_labels].sum(axis=1)
    scores = compute_class_scores(intersection, predicted, labelled)
    # 0/0 is NaN on purpose: it marks classes with nothing to score, which nanmean skips.
    with np.errstate(divide="ignore", invalid="ignore"):
        overall_accuracy = np.float64(intersection.sum()) / np.float64(labelled.sum())
    return {
        "mean_iou": _nanmean(scores["iou"]),
        "mean_accuracy": _nanmean(scores["accuracy"]),
        "overall_accuracy": overall_accuracy,
        "per_category_iou": scores["iou"],
        "per_category_accuracy": scores["accuracy"],
    }


def _nanmean(values: np.ndarray) -> np.float64:
    defined = values[~np.isnan(values)]
    return np.float64(defined.mean()) if defined.size else np.float64(np.nan)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MeanIoU(evaluate.Metric):
    """Dataset-level segmentation metrics from class maps (Hub-compatible) or streamed counts."""

    def _info(self):
        if self.config_name not in _CONFIGS:
            raise ValueError(
                f"unknown mean_iou configuration {self.config_name!r}; valid: {_CONFIGS} "
                "(default: class maps like the Hub's mean_iou; counts: nail_segformer's "
                "streaming counts)"
            )
        if self.config_name == "counts":
            features = counts_features()
        else:
            # uint16 like the Hub metric: holds class ids and the usual ignore value 255.
            segmentation_map = datasets.Sequence(datasets.Sequence(datasets.Value("uint16")))
            features = datasets.Features(
                {"predictions": segmentation_map, "references": segmentation_map}
            )
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=features,
            reference_urls=[
                "https://en.wikipedia.org/wiki/Jaccard_index",
                "https://arxiv.org/abs/2103.16562",
            ],
        )

    def _compute(self, **inputs):
        if self.config_name == "counts":
            return self._compute_counts(**inputs)
        return self._compute_maps(**inputs)

    def _compute_maps(
        self,
        predictions,
        references,
        num_labels: int,
        ignore_index: int,
        nan_to_num=None,
        label_map=None,
        reduce_labels: bool = False,
    ):
        results = _mean_iou(
            predictions, references, num_labels, ignore_index, label_map, reduce_labels
        )
        if nan_to_num is not None:
            results = {key: np.nan_to_num(value, nan=nan_to_num) for key, value in results.items()}
        return results

    def _compute_counts(
        self,
        confusion,
        boundary_intersection,
        boundary_union,
        true_nails,
        predicted_nails,
        matched_nails,
        count_error,
        images,
        nail_probability,
        id2label=None,
        positive_label=NAIL,
        threshold=None,
    ):
        columns = {
            "confusion": confusion,
            "boundary_intersection": boundary_intersection,
            "boundary_union": boundary_union,
            "true_nails": true_nails,
            "predicted_nails": predicted_nails,
            "matched_nails": matched_nails,
            "count_error": count_error,
            "images": images,
            "nail_probability": nail_probability,
        }
        counts = SegmentationCounts.from_columns(columns)
        return compute_metrics_from_counts(counts, id2label or ID2LABEL, positive_label, threshold)
