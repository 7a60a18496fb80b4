"""Shapes and palettes shared by the synthetic nail generator's scene and paint steps.

Polygons are float arrays of shape (N, 2) in ``(x, y)`` pixels; PIL rasterises them without
anti-aliasing, so a mask drawn from them is exactly binary. Colours are RGB in 0-255.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

# Very light to very dark skin; each photo jitters one of these.
SKIN_TONES = (
    (255, 222, 196),
    (243, 198, 166),
    (230, 178, 140),
    (210, 152, 114),
    (182, 124, 90),
    (143, 96, 66),
    (108, 70, 48),
    (78, 52, 38),
)
# Reds, burgundy, near-black, pinks, nudes, coral, purple, blue, white, silver.
POLISH_COLOURS = (
    (200, 16, 40),
    (142, 12, 42),
    (82, 14, 32),
    (40, 24, 32),
    (232, 80, 130),
    (246, 152, 178),
    (222, 178, 160),
    (196, 140, 122),
    (250, 104, 82),
    (142, 62, 160),
    (70, 110, 200),
    (236, 230, 226),
    (190, 190, 200),
)
# Walls, tables, wood, denim, fabric and other backgrounds.
SURFACE_COLOURS = (
    (236, 234, 228),
    (200, 198, 192),
    (122, 122, 128),
    (58, 58, 64),
    (172, 132, 92),
    (120, 84, 56),
    (92, 120, 160),
    (82, 128, 92),
    (212, 192, 162),
    (232, 208, 200),
    (30, 30, 36),
    (178, 64, 64),
)


def unit(angle: float) -> np.ndarray:
    """Unit vector at ``angle`` radians (image coordinates: y points down)."""
    return np.array([math.cos(angle), math.sin(angle)])


def _place(local: np.ndarray, center: np.ndarray, angle: float) -> np.ndarray:
    """Rotate local points by ``angle`` and move their origin to ``center``."""
    c, s = math.cos(angle), math.sin(angle)
    return local @ np.array([[c, s], [-s, c]]) + center


def superellipse(
    center, half_length: float, half_width: float, angle: float, power: float = 2.0, n: int = 32
) -> np.ndarray:
    """Polygon of ``|x/a|^p + |y/b|^p = 1`` rotated by ``angle`` radians about ``center``."""
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    x = half_length * np.sign(c) * np.abs(c) ** (2.0 / power)
    y = half_width * np.sign(s) * np.abs(s) ** (2.0 / power)
    return _place(np.stack([x, y], axis=1), np.asarray(center, dtype=float), angle)


def capsule(p0: np.ndarray, p1: np.ndarray, width: float, n: int = 10) -> np.ndarray:
    """Polygon of the segment ``p0 -> p1`` with round caps of diameter ``width``."""
    d = p1 - p0
    length, angle, r = float(np.hypot(*d)), math.atan2(d[1], d[0]), width / 2.0
    t = np.linspace(-np.pi / 2, np.pi / 2, n)
    end_cap = np.stack([length + r * np.cos(t), r * np.sin(t)], axis=1)
    start_cap = np.stack([r * np.cos(t + np.pi), r * np.sin(t + np.pi)], axis=1)
    return _place(np.concatenate([end_cap, start_cap]), p0, angle)


def flat(poly: np.ndarray) -> list[float]:
    """``[x0, y0, x1, y1, ...]`` as PIL's ImageDraw expects."""
    return poly.ravel().tolist()


def rasterise(poly: np.ndarray, width: int, height: int) -> tuple[int, int, np.ndarray] | None:
    """Pixels of ``poly`` inside a ``width`` x ``height`` image as ``(x0, y0, bool tile)``.

    Returns None when the polygon's bounding box misses the image.
    """
    x0, y0 = np.maximum(np.floor(poly.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(poly.max(axis=0)).astype(int) + 1, (width, height))
    if x1 <= x0 or y1 <= y0:
        return None
    tile = Image.new("L", (int(x1 - x0), int(y1 - y0)), 0)
    ImageDraw.Draw(tile).polygon(flat(poly - (x0, y0)), fill=1)
    return int(x0), int(y0), np.asarray(tile, dtype=bool)
