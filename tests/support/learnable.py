"""A tiny, clearly learnable nail set: bright nail-shaped ellipses on plain dark backgrounds.

Unlike the synthetic set (kept as hard as real photos), any working pipeline learns this one in
a few hundred tiny-model steps; a pipeline that misaligns photos and masks, inverts the labels
or does not learn cannot. conftest's ``learned_run_dir`` trains it once per test session:
tests/test_learning.py checks it learned, the export tests use it as a model that works.
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


def train_learnable(data_root: Path, output_dir: Path) -> Path:
    """A tiny from-scratch run that learns this set (nail IoU 0.92-0.93 on fresh photos)."""
    from nail_segformer.train import main

    main(
        [
            "--data_root", str(data_root),
            "--output_dir", str(output_dir),
            "--from_scratch_preset", "tiny",
            "--image_size", str(SIZE),
            "--max_steps", "150",
            "--per_device_train_batch_size", "8",
            "--learning_rate", "5e-3",
            "--warmup_steps", "0.1",
            "--loss", "dice_ce",
            "--crop_scale_min", "1.0",
            "--rotate_limit", "0",
            "--validation_fraction", "0.2",
            "--test_fraction", "0",
            "--eval_strategy", "no",
            "--save_strategy", "no",
            "--load_best_model_at_end", "false",
            "--dataloader_num_workers", "0",
            "--logging_steps", "50",
            "--use_cpu", "true",
            "--seed", "0",
            "--disable_tqdm", "true",
        ]
    )  # fmt: skip
    return output_dir
