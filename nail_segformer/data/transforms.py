"""Albumentations augmentations and ``SegformerImageProcessor`` glue, applied on the fly.

Backend choice: transformers 5 ships two Segformer processors, a torchvision one and a PIL one
(``SegformerImageProcessorPil``), and falls back to PIL with a warning when torchvision is
missing. We always use the PIL backend: it needs no torchvision (whose PyPI wheels do not import
beside CPU-only torch builds), and it is what ``pipeline("image-segmentation")`` runs on such a
machine, so the evaluation transform below is byte-for-byte what inference does there. The saved
``preprocessor_config.json`` is backend-neutral; with torchvision installed, ``AutoImageProcessor``
picks the torchvision backend, whose bilinear resize differs from PIL's by rounding only.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Callable
from typing import Any

import numpy as np

from nail_segformer.data.dataset import image_source, undecoded
from nail_segformer.data.files import (
    ImageReadError,
    PairReadError,
    load_image,
    load_labels,
    portable_path,
)
from nail_segformer.labels import IGNORE_INDEX

__all__ = [
    "load_image_processor",
    "processor_size",
    "apply_levels",
    "working_size",
    "load_working_pair",
    "load_row",
    "encode_cached",
    "decode_cached",
    "build_train_transforms",
    "SegmentationTransform",
    "attach_transforms",
]

logger = logging.getLogger(__name__)


def check_side(name: str, value: int) -> None:
    """Raise ``ValueError`` unless ``value`` (an input or patch side) is a multiple of 32.

    SegFormer's encoder downsamples by 32, so other sides leave feature maps that do not tile.
    """
    if value < 32 or value % 32:
        raise ValueError(f"{name} must be a multiple of 32, at least 32; got {value}")


def check_probability(name: str, value: float) -> None:
    """Raise ``ValueError`` unless ``value`` is in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")


def load_image_processor(
    source: str | os.PathLike | None = None, size: int | None = None, **hub_kwargs: Any
):
    """Load (or create) the PIL-backend ``SegformerImageProcessor`` for this package's labels.

    Args:
        source: a checkpoint folder or Hub id holding ``preprocessor_config.json``; ``None``
            builds the SegFormer defaults (ImageNet mean/std, 512x512).
        size: if given, the square side the processor resizes to, overriding the saved size.
        **hub_kwargs: passed to ``from_pretrained`` (``local_files_only``, ``revision``, ...).

    Returns:
        A processor with ``do_reduce_labels=False`` whatever the checkpoint said: our masks are
        0/1, and label reduction would turn background into "ignore" (ADE20k checkpoints such as
        ``nvidia/segformer-b4-finetuned-ade-512-512`` save it switched on).
    """
    from transformers import SegformerImageProcessorPil

    overrides: dict[str, Any] = {"do_reduce_labels": False}
    if size is not None:
        check_side("--image_size", size)
        overrides["size"] = {"height": size, "width": size}
    if source is None:
        return SegformerImageProcessorPil(**overrides)
    config, _ = SegformerImageProcessorPil.get_image_processor_dict(str(source), **hub_kwargs)
    # The ADE20k checkpoints' legacy file says "reduce_labels": true. transformers 5 keeps the
    # key as a bare attribute and would save it beside do_reduce_labels=false; transformers 4
    # reads the old key last and would switch label reduction back on for whoever loads our
    # model. Drop it so that the saved processor says one thing.
    config.pop("reduce_labels", None)
    return SegformerImageProcessorPil.from_dict(config, **overrides)


def apply_levels(table: np.ndarray, image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(3, H, W) float32 model input of an (H, W, 3) ``uint8`` RGB photo, from a (3, 256) table
    of what the processor's rescale and normalisation make of each level of each channel (both
    act per 8-bit level, so the lookup gives their exact values); written into ``out`` if given."""
    if out is None:
        out = np.empty((3, *image.shape[:2]), np.float32)
    for channel in range(3):
        np.take(table[channel], image[..., channel], out=out[channel])
    return out


def processor_size(processor) -> tuple[int, int]:
    """``(height, width)`` the processor resizes to."""
    size = processor.size
    if hasattr(size, "height"):  # SizeDict
        return int(size.height), int(size.width)
    return int(size["height"]), int(size["width"])


def working_size(image_size: int, crop_scale_min: float) -> int:
    """Side that training photos are brought down to before crops are cut from them.

    The smallest random crop (``crop_scale_min`` of the area) of a photo this size still spans
    ``image_size`` pixels a side, so no crop is upsampled and the detail a crop shows is what
    the full-size photo would give; larger photos only cost decoding time.
    """
    return math.ceil(image_size / math.sqrt(crop_scale_min))


def load_working_pair(
    image_path: str | os.PathLike,
    mask_path: str | os.PathLike,
    size: int | None,
    nail_values: tuple | None = None,
    return_convention: bool = False,
    class_ids: bool = False,
):
    """Decode a photo and its mask, each side brought down to at most ``size`` pixels.

    Width and height are reduced independently (a 4032x3024 photo becomes ``size`` x ``size``),
    which is the squash to a square that evaluation applies anyway, done in part here: both
    scalings only multiply. Photos smaller than ``size`` on a side keep that side: nothing is
    upscaled. JPEGs are decoded at reduced scale when ``size`` allows (see :func:`load_image`),
    then resized with PIL's antialiased bilinear filter (the processor's); masks are read at
    full size and resized with nearest neighbour.

    Args:
        image_path: the photo (a path, or an :class:`~nail_segformer.data.files.EmbeddedImage`).
        mask_path: its mask, at the photo's size after EXIF rotation.
        size: the working size (see :func:`working_size`); ``None`` keeps full resolution.
        nail_values: passed to :func:`nail_segformer.data.load_labels`.
        return_convention: also return the mask convention the labels were read by.
        class_ids: the mask is a dataset's label of class ids (see ``load_labels``).

    Returns:
        ``(image, labels)``: (H, W, 3) ``uint8`` RGB and (H, W) ``uint8`` labels (0, 1, 255);
        ``(image, labels, convention)`` with ``return_convention``.

    Raises:
        ImageReadError: a file cannot be decoded, its mask values are refused, or the sizes
            differ.
    """
    from PIL import Image

    # Asking for size x size reduces a JPEG exactly as its per-side target would: draft keeps
    # both sides at least that large, so a side already smaller stops any reduction either way.
    reduce_to = None if size is None else (size, size)
    image, (width, height) = load_image(image_path, reduce_to, return_size=True)
    target = (width, height) if size is None else (min(width, size), min(height, size))
    labels, convention = load_labels(mask_path, nail_values, True, class_ids)
    if labels.shape != (height, width):
        raise ImageReadError(
            f"mask {portable_path(mask_path)} is {labels.shape[1]}x{labels.shape[0]} but photo "
            f"{portable_path(image_path)} is "
            f"{width}x{height}; re-export the mask at the photo's size"
        )
    if image.size != target:
        image = image.resize(target, Image.Resampling.BILINEAR)
    if labels.shape != (target[1], target[0]):
        labels = np.asarray(Image.fromarray(labels).resize(target, Image.Resampling.NEAREST))
    image = np.asarray(image)
    return (image, labels, convention) if return_convention else (image, labels)


def build_train_transforms(
    height: int,
    width: int,
    scale: tuple[float, float] = (0.3, 1.0),
    hflip: float = 0.5,
    rotate_limit: float = 15.0,
    rotate_p: float = 0.5,
    color_p: float = 0.5,
    blur_p: float = 0.2,
    compression_p: float = 0.2,
    crop_size: int | None = None,
    nail_crop_p: float = 0.7,
    seed: int | None = None,
):
    """Augmentations for hand photos, applied jointly to photo and mask.

    A random crop of 30-100% of the photo's area (aspect 3:4 to 4:3) resized to the model's
    input size, so small nails are sometimes seen large. The crop is drawn in the photo squashed
    to a square, the shape evaluation and inference resize every photo to (see
    :mod:`nail_segformer.data._squash_crop`), and shrunk with area interpolation, which
    antialiases as the processor's resize does: with ``scale=(1.0, 1.0)`` it is the whole
    photo, edges included, and the sample matches the evaluation input. With ``crop_size``, a
    square patch of that side is then cut from it (with ``scale=(1.0, 1.0)``, at the scale evaluation sees):
    with probability ``nail_crop_p`` a patch holding a random nail pixel (nails are about 2% of
    a photo, so patches drawn uniformly are mostly nail-free), otherwise one anywhere. A patch
    costs a fraction of a whole image, so the same compute makes many more optimiser steps.
    Then horizontal flips (left and right hands are mirror images); small rotations, since
    photos are taken at any wrist angle; colour jitter for skin tones and lighting; blur and
    JPEG compression as phones produce them. Pixels that a rotation brings in are labelled
    ``IGNORE_INDEX`` rather than background, so the model is not taught that the black border
    is "not nail". Masks always use nearest-neighbour interpolation.

    Args:
        height: output height in pixels (the processor's size).
        width: output width in pixels.
        scale: range of the crop's area as a fraction of the photo's.
        hflip: probability of a horizontal flip.
        rotate_limit: largest rotation in degrees, either way.
        rotate_p: probability of a rotation.
        color_p: probability of colour jitter.
        blur_p: probability of a Gaussian or motion blur.
        compression_p: probability of JPEG re-compression.
        crop_size: side of the square training patch, at most ``height`` and ``width``; ``None``
            trains on whole ``height`` x ``width`` images.
        nail_crop_p: with ``crop_size``, probability that a patch holds a nail pixel.
        seed: seed of the pipeline's random generator; ``None`` draws one.

    Returns:
        An ``albumentations.Compose`` taking ``image`` (H, W, 3 uint8) and ``mask`` (H, W uint8)
        and returning them at ``crop_size`` (or ``height`` x ``width``), ready for a processor
        called with ``do_resize=False``.
    """
    import albumentations as A
    import cv2

    from nail_segformer.data._squash_crop import SquashedRandomResizedCrop

    for name, p in (
        ("hflip", hflip),
        ("rotate_p", rotate_p),
        ("color_p", color_p),
        ("blur_p", blur_p),
        ("compression_p", compression_p),
        ("nail_crop_p", nail_crop_p),
    ):
        check_probability(name, p)
    patch = []
    if crop_size is not None:
        if not 1 <= crop_size <= min(height, width):
            raise ValueError(
                f"crop_size must be between 1 and the input size {min(height, width)}, "
                f"got {crop_size}"
            )
        patch = [
            A.OneOf(
                [
                    A.CropNonEmptyMaskIfExists(height=crop_size, width=crop_size, p=nail_crop_p),
                    A.RandomCrop(height=crop_size, width=crop_size, p=1.0 - nail_crop_p),
                ],
                p=1.0,
            )
        ]
    return A.Compose(
        [
            SquashedRandomResizedCrop(size=(height, width), scale=scale, ratio=(3 / 4, 4 / 3)),
            *patch,
            A.HorizontalFlip(p=hflip),
            A.Affine(
                rotate=(-rotate_limit, rotate_limit),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=IGNORE_INDEX,
                p=rotate_p,
            ),
            A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.03, p=color_p),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7))], p=blur_p),
            A.ImageCompression(quality_range=(50, 95), p=compression_p),
        ],
        seed=seed,
    )


def load_row(
    row: dict, size: int | None, nail_values: tuple | None = None, class_ids: bool = False
):
    """:func:`load_working_pair` of a split's row (its undecoded ``image`` and ``label`` values,
    and its ``row`` name if it has one): ``(image, labels, convention)``.

    Raises:
        PairReadError: the pair cannot be read; ``image`` and ``mask`` name what was read (the
            row's name when it holds no image at all), the original error is its cause.
    """
    name = row.get("row")
    image = mask = name or "a row"  # until the row's values say more
    try:
        image, mask = (image_source(row[c], name) for c in ("image", "label"))
        return load_working_pair(image, mask, size, nail_values, True, class_ids)
    except ImageReadError as err:
        raise PairReadError(str(err), image=portable_path(image), mask=portable_path(mask)) from err


# Columns of a split cached by :mod:`nail_segformer.data.cache`: the encoded photo and labels
# (:func:`encode_cached`), their shape, and why a pair could not be read ("" when it could).
CACHED_COLUMNS = ("image_encoded", "labels_encoded", "height", "width", "error")
# Training copies are lossy (JPEG at quality 95 without chroma subsampling: 0.6-1.1 levels from
# the exact pixels on phone photos, where 4:2:0 was 0.7-1.4; the recipe re-compresses photos as
# an augmentation anyway); evaluation copies are exact (lossless WebP: a quality above 100).
# Labels are PNG at the fastest level. Sizes and costs: docs/data.md.
_JPEG_QUALITY, _WEBP_LOSSLESS, _PNG_LEVEL = 95, 101, 1


def encode_cached(image: np.ndarray, labels: np.ndarray, exact: bool) -> tuple[bytes, bytes]:
    """``(image, labels)`` as a cache stores them: an (H, W, 3) RGB ``uint8`` photo as JPEG, or
    losslessly with ``exact``, and its (H, W) ``uint8`` labels as PNG (always exact)."""
    import cv2

    if exact:
        suffix, params = ".webp", [cv2.IMWRITE_WEBP_QUALITY, _WEBP_LOSSLESS]
    else:
        suffix = ".jpg"
        params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                  cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]  # fmt: skip
    photo = cv2.imencode(suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)[1]
    mask = cv2.imencode(".png", labels, [cv2.IMWRITE_PNG_COMPRESSION, _PNG_LEVEL])[1]
    return photo.tobytes(), mask.tobytes()


def decode_cached(image: bytes | None, labels: bytes) -> tuple[np.ndarray | None, np.ndarray]:
    """What :func:`encode_cached` stored: ``(RGB photo, labels)``; ``image`` None skips it."""
    import cv2

    mask = cv2.imdecode(np.frombuffer(labels, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        return None, mask
    bgr = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), mask


class SegmentationTransform:
    """Batch transform for ``Dataset.set_transform``: files -> ``pixel_values`` and ``labels``.

    Reads the ``image``/``label`` columns as undecoded ``datasets.Image`` values (paths), loads
    them with :func:`nail_segformer.data.load_image` / ``load_labels`` (EXIF rotation, mask
    values read by their convention), applies ``augment`` if given, then the processor. Rows of
    a split pre-resized by :func:`nail_segformer.data.cache.build_resized_cache` are read from
    their cached pixels instead of the files, and rows of an evaluation split cached by
    :func:`~nail_segformer.data.cache.build_eval_cache` only get the processor's rescale and
    normalisation (what its resize made is what the cache holds).

    Args:
        processor: a Segformer image processor (see :func:`load_image_processor`).
        augment: an albumentations pipeline for training; ``None`` for evaluation, which is then
            exactly the processor's own resize and normalisation of the full photo, as at
            inference.
        resize: whether the processor resizes what ``augment`` returns; False for pipelines
            that already return the training size, such as :func:`build_train_transforms`.
        working_size: with ``augment``, bring photos down to at most this many pixels a side
            before augmenting (see :func:`load_working_pair`); ``None`` augments full-size
            photos.
        nail_values: passed to ``load_labels`` (``--nail_values``).
        class_ids: labels are a dataset's class ids (see ``load_labels``), not mask files.

    Calling it raises :class:`~nail_segformer.data.files.PairReadError` for a pair that cannot
    be read; the message and the error's ``image`` and ``mask`` name its files.
    """

    def __init__(
        self,
        processor,
        augment: Callable | None = None,
        resize: bool = True,
        working_size: int | None = None,
        nail_values: tuple | None = None,
        class_ids: bool = False,
    ):
        if augment is None and not resize:
            raise ValueError("resize=False needs an augment that returns the final size")
        self.processor = processor
        self.augment = augment
        self.resize = resize
        self.working_size = working_size
        self.nail_values = nail_values
        self.class_ids = class_ids
        self._table: np.ndarray | None = None

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        images, masks = [], []
        for row in range(len(next(iter(batch.values())))):
            image, labels = self._load(batch, row)
            if self.augment is not None:
                self._reseed()
                out = self.augment(image=np.asarray(image), mask=labels)
                images.append(out["image"])
                masks.append(out["mask"])
            else:
                images.append(image)
                masks.append(labels)
        # An evaluation cache holds what the processor's resize made: only its rescale and
        # normalisation are left to apply.
        resized = self.augment is None and CACHED_COLUMNS[0] in batch
        return self.encode(images, masks, resize=self.resize and not resized)

    def encode(
        self, images: list, masks: list[np.ndarray], resize: bool | None = None
    ) -> dict[str, list]:
        """``pixel_values`` and ``labels`` of loaded (and augmented) photos and label maps.

        The processor's resize (unless ``resize``, default the transform's own, is False),
        rescale and normalisation; labels as ``int64``.
        """
        resize = self.resize if resize is None else resize
        if not resize and all(_is_rgb8(image) for image in images):
            # Already at the training size, photos only need the processor's rescale and
            # normalisation: per 8-bit level, so a lookup of what the processor makes of each
            # level gives its exact values at a fraction of the cost.
            table = self._level_table()
            return {
                "pixel_values": [apply_levels(table, image) for image in images],
                "labels": [np.asarray(mask, dtype=np.int64) for mask in masks],
            }
        encoded = self.processor(
            images=images,
            segmentation_maps=masks,
            do_reduce_labels=False,
            do_resize=resize,
            # Said, not guessed: transformers takes a photo 1 or 3 pixels tall for channels-first.
            input_data_format="channels_last",
            return_tensors="np",
        )
        return {
            "pixel_values": list(encoded["pixel_values"].astype(np.float32)),
            "labels": list(encoded["labels"].astype(np.int64)),
        }

    def _level_table(self) -> np.ndarray:
        """(3, 256) float32: the processor's output for each 8-bit level of each channel."""
        if self._table is None:
            levels = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
            out = self.processor(
                images=[levels],
                do_resize=False,
                input_data_format="channels_last",
                return_tensors="np",
            )["pixel_values"][0]
            self._table = np.ascontiguousarray(out[:, 0, :], dtype=np.float32)
        return self._table

    def _load(self, batch: dict[str, list], row: int):
        if CACHED_COLUMNS[0] in batch:  # the cache holds readable pairs only
            return decode_cached(batch[CACHED_COLUMNS[0]][row], batch[CACHED_COLUMNS[1]][row])
        # Evaluation reads whole photos: the processor's resize of them is what inference sees.
        size = self.working_size if self.augment is not None else None
        values = {c: batch[c][row] for c in ("image", "label", "row") if c in batch}
        return load_row(values, size, self.nail_values, self.class_ids)[:2]

    def _reseed(self) -> None:
        # Draw each sample's augmentation seed from torch's global generator, which the Trainer
        # seeds, saves in every checkpoint and restores on resume: a resumed run then augments
        # exactly as an uninterrupted one (for checkpoints at epoch ends, whatever the number of
        # workers; for mid-epoch checkpoints, with dataloader_num_workers=0).
        import torch

        seed = int(torch.randint(0, 2**62, ()).item())
        self.augment.set_random_state(np.random.default_rng(seed), random.Random(seed))


def _is_rgb8(image) -> bool:
    return (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
    )


def attach_transforms(
    dataset_dict,
    processor,
    train_augment: Callable | None,
    train_resize: bool = True,
    working_size: int | None = None,
    nail_values: tuple | None = None,
    class_ids: bool = False,
):
    """Return a copy of ``dataset_dict`` with on-the-fly transforms attached.

    ``train`` gets ``train_augment`` (if any) on photos brought down to ``working_size``,
    followed by the processor's resize unless ``train_resize`` is False; every other split gets
    the deterministic evaluation transform of the full photos. Images are cast to undecoded
    values (paths, or bytes) so that each is read by our loaders, with errors that name it;
    ``class_ids`` reads labels as a dataset's class ids. A ``train`` split
    pre-resized by :func:`nail_segformer.data.cache.build_resized_cache` is read from its cache.
    """
    out = {}
    for split, dataset in dataset_dict.items():
        dataset = undecoded(dataset)
        if split == "train":
            transform = SegmentationTransform(
                processor, train_augment, train_resize, working_size, nail_values, class_ids
            )
        else:
            transform = SegmentationTransform(
                processor, None, nail_values=nail_values, class_ids=class_ids
            )
        dataset.set_transform(transform)
        out[split] = dataset
    return type(dataset_dict)(out)
