"""The model card (README.md with YAML metadata) written next to a trained model and pushed."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from nail_segformer.metrics import HEADLINE_METRICS
from nail_segformer.model import NVIDIA_LICENSE_NOTE

__all__ = ["render_model_card", "write_model_card"]

logger = logging.getLogger(__name__)


def _license_fields(base_model: str | None) -> dict[str, str]:
    if base_model and base_model.startswith("nvidia/"):
        return {
            "license": "other",
            "license_name": "nvidia-segformer",
            "license_link": "https://github.com/NVlabs/SegFormer/blob/master/LICENSE",
        }
    return {"license": "unknown"}


def _metric_table(metrics: dict[str, dict[str, float]]) -> str:
    splits = [s for s in ("validation", "test") if metrics.get(s)]
    if not splits:
        return "No evaluation was run."
    lines = ["| metric | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    for key, title in HEADLINE_METRICS.items():
        values = [metrics[s].get(key) for s in splits]
        if all(v is None for v in values):
            continue
        cells = ["-" if v is None else f"{v:.4f}" for v in values]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


_METRIC_TITLES = {"iou": "IoU", "dice": "Dice", "f0.5": "F0.5", "f2": "F2"}
_THRESHOLD_ROWS = {
    "IoU": "iou_nail",
    "Dice": "nail_dice",
    "precision": "nail_precision",
    "recall": "nail_recall",
}


def _threshold_section(
    metrics: dict[str, dict[str, float]], threshold: float | None, metric: str
) -> str:
    if threshold is None:
        return (
            "No nail threshold was chosen (there was no nail pixel in a validation split to "
            "choose it on): masks are the argmax, as `pipeline()` gives them."
        )
    splits = [s for s in ("validation", "test") if metrics.get(s)]
    head = [f"{s} at {threshold:.2f}" for s in splits] + [f"{s}, argmax" for s in splits]
    lines = ["| nail | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for title, key in _THRESHOLD_ROWS.items():
        values = [metrics[s].get(f"{key}_at_threshold") for s in splits]
        values += [metrics[s].get(key) for s in splits]
        cells = ["-" if v is None else f"{v:.4f}" for v in values]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    return f"""A pixel is nail where its nail probability is above **{threshold:.2f}**, the threshold
at which nail {_METRIC_TITLES.get(metric, metric)} peaks on the validation split; the test split is reported at it, whether
or not it beats the argmax there. It is saved as `nail_threshold` in `config.json`, and
`python -m nail_segformer.predict` uses it unless given `--threshold` (`--threshold argmax`
for the argmax). `pipeline("image-segmentation")` and transformers.js take the argmax (a
threshold of 0.5).

{table}"""


def render_model_card(
    *,
    model_id: str,
    base_model: str | None,
    preset: str | None,
    id2label: dict[int, str],
    metrics: dict[str, dict[str, float]],
    data_summary: dict[str, Any],
    hyperparameters: dict[str, Any],
    threshold: float | None = None,
    threshold_metric: str = "iou",
):
    """Build a ``huggingface_hub.ModelCard``.

    Args:
        model_id: the Hub id (or folder name) the card describes.
        base_model: the Hub id of the checkpoint fine-tuned from; ``None`` when trained from
            scratch or fine-tuned from a local folder (the Hub accepts only model ids here).
        preset: the from-scratch size (``mit-b0`` ...); ``None`` when fine-tuned.
        id2label: label names of the head.
        metrics: per split (``validation``, ``test``), metric name to value.
        data_summary: ``pairs`` per split and ``categories`` (shown as a table); ``dataset``
            True when training read a Hugging Face dataset rather than a folder, ``hub_dataset``
            its Hub id when it came from the Hub (named in the card's ``datasets``).
        hyperparameters: name to value, shown as a list.
        threshold: the nail threshold chosen on validation (None: argmax), with its figures
            (``*_at_threshold`` keys) in ``metrics``.
        threshold_metric: the figure it was chosen by.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    hub_dataset = data_summary.get("hub_dataset")
    eval_results = [
        EvalResult(
            task_type="image-segmentation",
            dataset_type=hub_dataset or "imagefolder",
            dataset_name=hub_dataset or "nail segmentation",
            dataset_split=split,
            metric_type=key,
            metric_name=title,
            metric_value=float(values[key]),
        )
        for split, values in metrics.items()
        for key, title in HEADLINE_METRICS.items()
        if values.get(key) is not None
    ]
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-segmentation",
        tags=["segformer", "semantic-segmentation", "nail-segmentation", "nail_segformer"],
        base_model=base_model,
        datasets=[hub_dataset] if hub_dataset else None,
        model_name=model_id,
        eval_results=eval_results or None,
        **_license_fields(base_model),
    )
    if base_model:
        origin = f"a fine-tuned version of [{base_model}](https://huggingface.co/{base_model})"
    elif preset:
        origin = f"a SegFormer ({preset} size) trained from scratch"
    else:
        origin = "a fine-tuned version of a local SegFormer checkpoint"
    labels = ", ".join(f"`{i}`: {name}" for i, name in sorted(id2label.items()))
    split_rows = "\n".join(f"| {s} | {n} |" for s, n in data_summary.get("pairs", {}).items())
    categories = ", ".join(map(str, data_summary.get("categories", []))) or "none"
    if hub_dataset:
        source = f"""Photos and labels (class ids) from the Hugging Face dataset
[{hub_dataset}](https://huggingface.co/datasets/{hub_dataset}) (categories: {categories})."""
    elif data_summary.get("dataset"):
        source = f"""Photos and labels (class ids) from a Hugging Face dataset (categories: {categories})."""
    else:
        source = f"""Photos and masks from an `Images/<category>/` + `Masks/<category>/` folder
(categories: {categories}), split stratified by category. Which photo went to which split is
kept by whoever trained the model and not published, since it lists their file names."""
    hyper = "\n".join(f"- {k}: {v}" for k, v in hyperparameters.items())
    licence = (
        NVIDIA_LICENSE_NOTE
        if base_model and base_model.startswith("nvidia/")
        else (
            "The licence of these weights follows the licence of the data they were trained on; "
            "set it in this card's metadata before sharing."
        )
    )
    body = f"""
# {model_id}

This model is {origin} for nail segmentation: every pixel of a hand photo is labelled
{labels}. It was trained with the `nail_segformer` package and the Hugging Face `Trainer`.

## Results

{_metric_table(metrics)}

Metrics are computed over whole splits (intersections and unions summed over all images) at the
image processor's resolution, with 255 as the ignore index. Nails are the 8-connected components
of a mask; a predicted and a true nail match at IoU >= 0.5 (detection precision, recall and F1,
recall by nail size: small below 0.2% of the photo, large from 1%), and the count error is the
mean |predicted - true| nails per photo. Boundary IoU is the IoU of the masks' inner bands of 2%
of the image diagonal ([Cheng et al., CVPR 2021](https://arxiv.org/abs/2103.16562)).

## Nail threshold

{_threshold_section(metrics, threshold, threshold_metric)}

## Data

{source}

| split | pairs |
|---|---|
{split_rows}

## Training hyperparameters

{hyper}

## Usage

```python
from transformers import pipeline

segmenter = pipeline("image-segmentation", model="{model_id}")
masks = segmenter("hand.jpg")  # one entry per label, each with a PIL mask
nail_mask = next(m["mask"] for m in masks if m["label"] == "nail")
```

or, with this package, `python -m nail_segformer.predict --model {model_id} --input photos/ --output out/`.

## Licence

{licence}
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def write_model_card(output_dir: str | os.PathLike, **card_fields: Any) -> Path:
    """Render the card (see :func:`render_model_card`) to ``output_dir/README.md``."""
    path = Path(output_dir) / "README.md"
    render_model_card(**card_fields).save(path)
    logger.info("wrote model card %s", path)
    return path
