"""One photo through the page: read it the package's way, predict, draw and measure the nails.

Nothing here imports Gradio, so the page's answers are testable without it.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from nail_segformer.data.files import load_image, read_header
from nail_segformer.metrics import label_nails
from nail_segformer.predict.outputs import render_overlay

__all__ = ["MAX_SIDE", "Analysis", "analyze", "fit_to_max_side", "read_upload"]

# Photos longer than this on a side are answered at this side (mask included): the page shows
# and sends back every pixel it answers with, and a browser gains nothing from 200 MP.
MAX_SIDE = 2048


@dataclass
class Analysis:
    """What the page shows for one photo.

    Attributes:
        overlay: the photo with its nails tinted, outlined and numbered.
        mask: (H, W) uint8, 255 for nail, at the size the photo was answered at.
        nails: one row per nail, numbered as drawn: ``[number, area in pixels, percent of the
            photo, mean nail probability]``.
    """

    overlay: Image.Image
    mask: np.ndarray
    nails: list[list]


def _answer_size(width: int, height: int) -> tuple[tuple[int, int], float]:
    """The size a ``width`` x ``height`` photo is answered at, and its scale."""
    scale = min(1.0, MAX_SIDE / max(width, height))
    return (max(1, round(width * scale)), max(1, round(height * scale))), scale


def _resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)


def fit_to_max_side(image: Image.Image) -> tuple[Image.Image, float]:
    """An image already decoded (a webcam capture), brought down to :data:`MAX_SIDE`.

    Returns:
        ``(image, scale)``.
    """
    size, scale = _answer_size(*image.size)
    return _resized(image, size), scale


def read_upload(path: str | os.PathLike) -> tuple[Image.Image, float]:
    """The package's reader (pixel cap, EXIF orientation), brought down to :data:`MAX_SIDE`.

    A large JPEG is decoded at reduced scale first, so a 200 MP photo never exists in full.

    Returns:
        ``(RGB image, scale)``.

    Raises:
        ImageReadError: the file is not a readable image, or is above the pixel cap.
    """
    size, scale = _answer_size(*read_header(path)[:2])
    image = load_image(path, reduce_to=size if scale < 1.0 else None)
    return _resized(image, size), scale


def analyze(
    predictor,
    image: Image.Image,
    threshold: float | None = None,
    mode: str = "resize",
    tta: bool = False,
) -> Analysis:
    """Predict one photo with these settings, leaving ``predictor`` as it was.

    Args:
        predictor: a loaded :class:`~nail_segformer.predict.Predictor`.
        image: the photo, RGB.
        threshold: nail probability above which a pixel is nail; None takes the argmax.
        mode: ``resize`` or ``slide``.
        tta: average with the mirrored photo.
    """
    settings = copy.copy(predictor)  # one request's settings; the loaded model is shared
    settings.threshold, settings.mode, settings.tta = threshold, mode, tta
    [prediction] = settings.predict([image])
    labels, areas = label_nails(prediction.mask, predictor.min_nail_area)
    probability = prediction.nail_probability
    index = np.arange(1, len(areas) + 1)
    confidence = _means(probability, labels, index)
    nails = [
        [int(n), int(a), round(100 * a / labels.size, 3), round(float(c), 3)]
        for n, a, c in zip(index, areas, confidence, strict=True)
    ]
    overlay = render_overlay(image, prediction.mask)
    _number(overlay, labels, index)
    return Analysis(overlay, prediction.mask * np.uint8(255), nails)


def _means(values: np.ndarray, labels: np.ndarray, index: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    if not len(index):
        return np.zeros(0)
    return np.asarray(ndimage.mean(values, labels, index), dtype=float)


def _number(overlay: Image.Image, labels: np.ndarray, index: np.ndarray) -> None:
    """Write each nail's number at its centre, in a size that reads at any photo size."""
    from scipy import ndimage

    if not len(index):
        return
    draw = ImageDraw.Draw(overlay)
    font = ImageFont.load_default(size=max(12, max(overlay.size) // 40))
    centres = ndimage.center_of_mass(labels > 0, labels, index)
    for number, (row, col) in zip(index, centres, strict=True):
        draw.text(
            (col, row), str(number), fill="white", font=font, anchor="mm",
            stroke_width=2, stroke_fill="black",
        )  # fmt: skip
