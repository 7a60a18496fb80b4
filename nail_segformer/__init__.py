"""Fine-tune SegFormer for nail segmentation on Images/Masks folders.

The public API is importable from here, but nothing is imported until first used (PEP 562):
``import nail_segformer`` pulls in no Hugging Face model code, downloads nothing and configures no
logging. The stages live in subpackages, in the direction the data flows: ``labels`` ->
``data`` (files, pairing, splits, ``DatasetDict``, transforms) -> ``model``, ``losses``,
``metrics`` -> ``train`` and ``predict`` (-> ``export``); ``synthetic`` writes stand-in data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nail_segformer._lazy import lazy_exports

__version__ = "0.1.0"

# Public name -> module that defines it.
_LAZY = {
    "BACKGROUND": "nail_segformer.labels",
    "NAIL": "nail_segformer.labels",
    "IGNORE_INDEX": "nail_segformer.labels",
    "ID2LABEL": "nail_segformer.labels",
    "LABEL2ID": "nail_segformer.labels",
    "DataError": "nail_segformer.data",
    "ImageReadError": "nail_segformer.data",
    "find_pairs": "nail_segformer.data",
    "load_splits": "nail_segformer.data",
    "load_image": "nail_segformer.data",
    "load_labels": "nail_segformer.data",
    "generate_dataset": "nail_segformer.synthetic",
    "build_model": "nail_segformer.model",
    "load_model": "nail_segformer.model",
    "SegmentationLoss": "nail_segformer.losses",
    "StreamingSegmentationMetrics": "nail_segformer.metrics",
    "Predictor": "nail_segformer.predict",
    "Prediction": "nail_segformer.predict",
    "export_onnx": "nail_segformer.export",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports
    from nail_segformer.data import (
        DataError,
        ImageReadError,
        find_pairs,
        load_image,
        load_labels,
        load_splits,
    )
    from nail_segformer.export import export_onnx
    from nail_segformer.labels import BACKGROUND, ID2LABEL, IGNORE_INDEX, LABEL2ID, NAIL
    from nail_segformer.losses import SegmentationLoss
    from nail_segformer.metrics import StreamingSegmentationMetrics
    from nail_segformer.model import build_model, load_model
    from nail_segformer.predict import Prediction, Predictor
    from nail_segformer.synthetic import generate_dataset


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
