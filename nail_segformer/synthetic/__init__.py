"""Deterministic synthetic hand photos with nail masks, written in the Images/Masks layout.

The real nail data set cannot be downloaded everywhere, so tests, the training demo and the
notebook use this generator instead. It is meant to be as hard as real photos, not easier:
nails are small and low-contrast on pale skin, skin tones and polish colours vary, backgrounds
are cluttered and blurred, and nail-coloured objects (beads, candies, press-on-nail shapes,
polish bottles, lipsticks) and skin-coloured shapes lie around the hands but are never in the
mask. Uneven light, white balance, blur, sensor noise and JPEG compression come last.

Categories, like the folders of a real photo collection:

- ``"1"`` close-up: one to three fingertips fill the frame; large nails.
- ``"2"`` one whole hand near the centre, any rotation; five medium nails.
- ``"3"`` two hands side by side, or one hand further away; up to ten small nails.
- ``"4"`` a hand holding or lying among nail-coloured objects: a large object under the
  fingers, many polish-coloured distractors, some of them in front of the fingers.

Nails cover 0.5-8% of a photo (about 2% typical), most in category 1 and least in category 3.
Masks are 8-bit ``L`` PNGs, 0 = background and 255 = nail, without anti-aliasing. Each nail
is its own 8-connected component at least 6 px from any other nail, so ``scipy.ndimage.label``
on a mask counts exactly ``n_nails``. Sample ``index`` is drawn from
``np.random.default_rng([seed, index, category position])``: the same arguments give
byte-identical files, and ``generate_dataset(n=10)`` writes the first 10 files of ``n=200``.

Command line::

    python -m nail_segformer.synthetic OUT_DIR --n 200 --seed 0 [--categories 1 2 3 4]
        [--jpeg_quality 90]
"""

from nail_segformer.synthetic.generate import (
    CATEGORIES,
    IMAGES_DIR,
    MASKS_DIR,
    SyntheticSample,
    generate_dataset,
    render_sample,
)

__all__ = [
    "CATEGORIES",
    "IMAGES_DIR",
    "MASKS_DIR",
    "SyntheticSample",
    "render_sample",
    "generate_dataset",
]
