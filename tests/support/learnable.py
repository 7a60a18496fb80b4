"""A tiny, clearly learnable nail set: bright nail-shaped ellipses on plain dark backgrounds.

Unlike the synthetic set (kept as hard as real photos), any working pipeline learns this one in
a few hundred tiny-model steps; a pipeline that misaligns photos and masks, inverts the labels
or does not learn cannot. Used by tests/test_learning.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64


def render(rng: np.random.Generator, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """One ``(photo, mask)``: ``(size, size, 3)`` uint8 and ``(size, size)`` uint8 in {0, 255}."""
    background = rng.integers(20, 110, size=3)
    photo = Image.new("RGB", (size, size), tuple(int(v) for v in background))
    mask = Image.new("L", (size, size), 0)
    for _ in range(int(rng.integers(1, 4))):
        w, h = rng.integers(6, 12), rng.integers(9, 16)
        x, y = rng.integers(2, size - w - 2), rng.integers(2, size - h - 2)
        box = [int(x), int(y), int(x + w), int(y + h)]
        colour = tuple(int(v) for v in rng.integers(190, 256, size=3))
        ImageDraw.Draw(photo).ellipse(box, fill=colour)
        ImageDraw.Draw(mask).ellipse(box, fill=255)
    noisy = np.asarray(photo, dtype=np.int16) + rng.integers(-12, 13, size=(size, size, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8), np.asarray(mask)


def write_learnable_set(root: Path, n: int, seed: int, mask_fn=None) -> Path:
    """Write ``n`` pairs as ``root/Images/1/*.png`` + ``root/Masks/1/*.png``.

    ``mask_fn`` (tests of the test) alters each mask before it is written, e.g. shifts it.
    """
    rng = np.random.default_rng(seed)
    for folder in ("Images/1", "Masks/1"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index in range(n):
        photo, mask = render(rng)
        if mask_fn is not None:
            mask = mask_fn(mask)
        Image.fromarray(photo).save(root / "Images/1" / f"{index:03d}.png")
        Image.fromarray(mask).save(root / "Masks/1" / f"{index:03d}.png")
    return root
