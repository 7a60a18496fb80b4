"""Boundary IoU (Cheng et al., "Boundary IoU: Improving Object-Centric Image Segmentation
Evaluation", CVPR 2021): IoU restricted to the pixels of each mask near its own contour.

The inner boundary band of a mask is the mask minus its erosion by ``d`` pixels: its pixels
within ``d`` steps (8-connected, i.e. chessboard distance) of a non-mask pixel, the image border
counting as outside. ``d`` is 2% of the image diagonal, the paper's default dilation ratio 0.02,
rounded and at least 1 (14 px at 512x512, 26 px at 1024x768). Boundary IoU is
``|band(true) & band(predicted)| / |band(true) | band(predicted)|``: a one-pixel shift of a large
nail barely moves its pixel IoU but visibly lowers its boundary IoU.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from nail_segformer.metrics.nails import _as_bool, _mask_pair

__all__ = ["BOUNDARY_DILATION_RATIO", "boundary_width", "inner_boundary", "boundary_counts"]

BOUNDARY_DILATION_RATIO = 0.02


def boundary_width(height: int, width: int) -> int:
    """Band width ``d`` in pixels: 2% of the image diagonal, rounded, at least 1."""
    return max(1, round(BOUNDARY_DILATION_RATIO * math.hypot(height, width)))


def inner_boundary(mask: np.ndarray, width: int | None = None) -> np.ndarray:
    """The pixels of ``mask`` within ``width`` pixels of its contour or of the image border.

    Args:
        mask: (H, W) array, inside where non-zero.
        width: band width in pixels; ``None`` uses :func:`boundary_width`.

    Returns:
        (H, W) bool band.
    """
    inside = _as_bool(mask)
    if width is None:
        width = boundary_width(*inside.shape)
    # One erosion by a (2d+1)-pixel square equals the paper's d erosions by a 3x3 square; a
    # constant 0 border makes the image edge a contour, as the paper's zero padding does.
    kernel = np.ones((2 * width + 1, 2 * width + 1), dtype=np.uint8)
    eroded = cv2.erode(inside.view(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return inside & (eroded == 0)


def boundary_counts(
    predicted: np.ndarray, true: np.ndarray, width: int | None = None
) -> tuple[int, int]:
    """Pixels in both inner bands and in either: boundary IoU's numerator and denominator.

    Args:
        predicted: (H, W) mask, nail where non-zero.
        true: (H, W) mask of the same shape.
        width: band width in pixels; ``None`` uses :func:`boundary_width` of the image.

    Raises:
        ValueError: If the shapes differ.
    """
    predicted, true = _mask_pair(predicted, true)
    predicted_band = inner_boundary(predicted, width)
    true_band = inner_boundary(true, width)
    return (
        int(np.count_nonzero(predicted_band & true_band)),
        int(np.count_nonzero(predicted_band | true_band)),
    )
