"""Phone photos through the training and evaluation transforms: milliseconds per sample, per core.

    python benchmarks/phone_photos.py                 # 3 photos of each shape, 3 rounds
    python benchmarks/phone_photos.py --quick         # 1 photo of each shape, 1 round
    python benchmarks/phone_photos.py --json out.json

Writes, into a temporary folder removed at the end, phone-sized photos with PNG masks:
12 MP 4:3 JPEGs stored landscape (4032x3024) with EXIF orientation 6, so they are seen portrait,
and 12 MP 16:9 JPEGs (4608x2592) without rotation; synthetic hand scenes from
``nail_segformer.synthetic`` rendered at full size, with sensor noise so that they compress like
camera files; masks 8-bit 0/255 at the seen orientation. Then, in this one process with one
thread everywhere (torch, OpenCV, OpenMP), per sample and interleaved sample by sample:

- ``before``: the training transform as it was before the fast path (commit 83f7900): every
  pixel decoded, albumentations ``RandomResizedCrop`` (cv2 bilinear, no antialiasing) on the
  full photo, then flips, rotation, colour, blur, JPEG noise and the processor. Rebuilt here
  from the same albumentations transforms, since the package no longer has it.
- ``after, no cache``: the training transform reading files (``--resize_cache false``): JPEG
  decoded at reduced scale, shrunk to the working size, the squashed crop, the rest as before.
- ``after, cache``: the same reading the Arrow cache that ``build_resized_cache`` writes once
  (its one-off cost per photo is reported too).
- ``evaluation``: the evaluation transform (full decode, the processor's resize), unchanged.

Each stage is timed in CPU time of the measuring thread, i.e. milliseconds on one core, which
other programs on a shared machine barely change: decode (or cache read), augmentation,
processor. Every figure is the mean over photos of each photo's fastest round. Also reported: how far a no-augmentation training
sample is from the evaluation input of the same photo (mean absolute difference in 8-bit
levels), the share of a 16:9 photo's width a full-size crop covers, and whether 8 workers at
the measured rate feed a MiT-b4 512 px bf16 training step on one H100, whose rate is estimated
from published figures (the constants below; ``benchmarks/RESULTS.md`` gives the sources).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

# One core: set before numpy, torch and OpenCV start their thread pools.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SEED = 0
IMAGE_SIZE = 512
CROP_SCALE_MIN = 0.3  # the package default
SHAPES = {
    # name: (stored width, stored height, EXIF orientation)
    "12 MP 4:3, EXIF 6": (4032, 3024, 6),
    "12 MP 16:9": (4608, 2592, 1),
}
# GPU side of the goal (benchmarks/RESULTS.md says where each number comes from).
B4_TRAIN_GFLOP_PER_SAMPLE = 3 * 187.4  # forward counted with torch's FlopCounterMode, x3
H100_BF16_DENSE_TFLOPS = 989.0
MMSEG_B4_V100_FPS = 15.45  # published MMSegmentation figure, fp32 inference at 512x512
V100_FP32_TFLOPS = 15.7
WORKERS = 8


def write_photos(root: Path, per_shape: int) -> list[tuple[str, str, str]]:
    """Write the phone photos and masks; returns ``(photo, mask, shape name)`` triples."""
    import numpy as np
    from PIL import Image

    from nail_segformer.synthetic import render_sample

    (root / "Images").mkdir(parents=True)
    (root / "Masks").mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    out = []
    for shape_index, (name, (width, height, orientation)) in enumerate(SHAPES.items()):
        for i in range(per_shape):
            seen = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
            sample = render_sample(SEED, 10 * shape_index + i, "2", size=seen)
            pixels = np.asarray(sample.image, dtype=np.int16)
            pixels = pixels + rng.normal(0, 3, pixels.shape).astype(np.int16)
            photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            exif = Image.Exif()
            if orientation == 6:
                photo = photo.transpose(Image.Transpose.ROTATE_90)  # stored as the camera wrote it
                exif[0x0112] = 6
            stem = f"phone_{shape_index}_{i}"
            photo_path, mask_path = root / "Images" / f"{stem}.jpg", root / "Masks" / f"{stem}.png"
            photo.save(photo_path, quality=92, exif=exif)
            sample.mask.save(mask_path)
            out.append((str(photo_path), str(mask_path), name))
    return out


def before_augment(size: int, seed: int):
    """The training augmentation before the fast path (commit 83f7900), crop step included."""
    import albumentations as A
    import cv2

    return A.Compose(
        [
            A.RandomResizedCrop(
                size=(size, size), scale=(CROP_SCALE_MIN, 1.0), ratio=(3 / 4, 4 / 3)
            ),
            A.HorizontalFlip(p=0.5),
            A.Affine(
                rotate=(-15, 15), border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=255, p=0.5
            ),
            A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.03, p=0.5),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7))], p=0.2),
            A.ImageCompression(quality_range=(50, 95), p=0.2),
        ],
        seed=seed,
    )


def before_load_labels(path: str, nail_values=None):
    """The mask reader before the conventions table, for 8-bit grey masks: >= 128 is nail."""
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.load()
        values = np.asarray(ImageOps.exif_transpose(im))
    if values.max() <= 1:
        return values.astype(np.uint8)
    return (values >= 128).astype(np.uint8)


def _timed(fn):
    """CPU milliseconds of this thread (the cost on one core, whatever else loads the machine)."""
    start = time.thread_time()
    result = fn()
    return (time.thread_time() - start) * 1000, result


def measure(pairs, rounds: int, workdir: Path) -> dict:
    import cv2
    import numpy as np
    import torch

    from nail_segformer.data import Pair, build_dataset_dict, find_pairs, load_image, load_labels
    from nail_segformer.data.cache import build_resized_cache
    from nail_segformer.data.transforms import (
        SegmentationTransform,
        attach_transforms,
        build_train_transforms,
        load_image_processor,
        load_working_pair,
        working_size,
    )

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    processor = load_image_processor(None, size=IMAGE_SIZE)
    size = working_size(IMAGE_SIZE, CROP_SCALE_MIN)
    old = before_augment(IMAGE_SIZE, SEED)
    new = build_train_transforms(IMAGE_SIZE, IMAGE_SIZE, seed=SEED)

    def process(images, masks, resize):
        return processor(
            images=images, segmentation_maps=masks, do_reduce_labels=False, do_resize=resize,
            return_tensors="np",
        )  # fmt: skip

    package_encode = SegmentationTransform(processor, new, resize=False).encode

    # The cache, built once: its cost per photo is the one-off price of every later epoch.
    scan = find_pairs(workdir / "photos")
    dataset = build_dataset_dict([Pair(p.image, p.mask, p.category, "train") for p in scan.pairs])
    dataset = dataset["train"]
    build_ms, (cached, problems) = _timed(
        lambda: build_resized_cache(dataset, size, cache_dir=workdir / "cache")
    )
    assert not problems, problems
    position = {value["path"]: i for i, value in enumerate(cached["image"])}
    raw = cached.select_columns(["image_rgb", "label_map", "height", "width"])
    cache_mib = sum(p.stat().st_size for p in (workdir / "cache").glob("*.arrow")) / 2**20

    def read_cached(path):
        row = raw[position[path]]  # from the memory-mapped Arrow file, as each epoch reads it
        h, w = row["height"], row["width"]
        return (
            np.frombuffer(row["image_rgb"], np.uint8).reshape(h, w, 3),
            np.frombuffer(row["label_map"], np.uint8).reshape(h, w),
        )

    variants = {
        "before": lambda p, m: (
            lambda: (np.asarray(load_image(p)), before_load_labels(m)),
            lambda x: old(image=x[0], mask=x[1]),
            False,
        ),
        "after, no cache": lambda p, m: (
            lambda: load_working_pair(p, m, size),
            lambda x: new(image=x[0], mask=x[1]),
            False,
        ),
        "after, cache": lambda p, m: (
            lambda: read_cached(p),
            lambda x: new(image=x[0], mask=x[1]),
            False,
        ),
        "evaluation": lambda p, m: (
            lambda: (load_image(p), load_labels(m)),
            None,
            True,
        ),
    }
    best: dict[tuple[str, str, str], float] = {}
    for _ in range(rounds):
        for photo, mask, _shape in pairs:
            for name, make in variants.items():
                decode, augment, resize = make(photo, mask)
                times = {}
                times["decode"], loaded = _timed(decode)
                if augment is not None:
                    times["augment"], out = _timed(partial(augment, loaded))
                    image, labels = out["image"], out["mask"]
                else:
                    times["augment"], (image, labels) = 0.0, loaded
                if name.startswith("after"):  # the package's own last step
                    encode = partial(package_encode, [image], [labels])
                else:
                    encode = partial(process, [image], [labels], resize)
                times["processor"], _ = _timed(encode)
                for stage, ms in times.items():
                    key = (name, photo, stage)
                    best[key] = min(best.get(key, float("inf")), ms)
    # The same, end to end through the package's transform on the cached split (datasets'
    # formatting, the processor's copies): what a data-loader worker does per sample.
    # The "before" transform the same way: the package's transform on the files, full size, with
    # the old augmentation and the old mask reader swapped in.
    import nail_segformer.data.transforms as transforms_module

    after = attach_transforms({"train": cached}, processor, new, False, working_size=size)["train"]
    before = attach_transforms({"train": dataset}, processor, old, False)["train"]
    end_to_end = {"before": [], "after, cache": []}
    current_reader = transforms_module.load_labels
    for index in range(len(after)):
        for name, split in (("before", before), ("after, cache", after)):
            transforms_module.load_labels = (
                before_load_labels if name == "before" else current_reader
            )
            try:
                times = [_timed(partial(split.__getitem__, index))[0] for _ in range(rounds)]
            finally:
                transforms_module.load_labels = current_reader
            end_to_end[name].append(min(times))
    result = {"variants": {}, "working_size": size, "photos": len(pairs)}
    result["end_to_end_ms"] = {name: float(np.mean(v)) for name, v in end_to_end.items()}
    for name in variants:
        stages = {
            stage: float(np.mean([best[(name, p, stage)] for p, _, _ in pairs]))
            for stage in ("decode", "augment", "processor")
        }
        result["variants"][name] = {"total_ms": sum(stages.values()), **stages}
    result["cache"] = {
        "build_ms_per_photo": build_ms / len(dataset),
        "mib": cache_mib,
        "mib_per_photo": cache_mib / len(dataset),
    }
    result["parity"] = parity(pairs, processor, size, read_cached)
    return result


def parity(pairs, processor, size: int, read_cached) -> dict:
    """No-augmentation training sample vs evaluation input, before and after, per shape."""
    import albumentations as A
    import numpy as np

    from nail_segformer.data import load_image, load_labels
    from nail_segformer.data.transforms import build_train_transforms

    plain = {"hflip": 0.0, "rotate_p": 0.0, "color_p": 0.0, "blur_p": 0.0, "compression_p": 0.0}
    new = build_train_transforms(IMAGE_SIZE, IMAGE_SIZE, scale=(1.0, 1.0), **plain)
    old_crop = A.RandomResizedCrop(
        size=(IMAGE_SIZE, IMAGE_SIZE), scale=(1.0, 1.0), ratio=(3 / 4, 4 / 3)
    )
    out = {}
    for photo, mask, shape in pairs:
        full = load_image(photo)
        evaluation = np.asarray(full.resize((IMAGE_SIZE, IMAGE_SIZE), resample=2), dtype=np.float64)
        after = np.asarray(new(image=read_cached(photo)[0], mask=read_cached(photo)[1])["image"])
        old = old_crop(image=np.asarray(full), mask=load_labels(mask))
        width = full.width
        kept = old_crop.get_params_dependent_on_data({"shape": (full.height, width)}, {})
        x0, _, x1, _ = kept["crop_coords"]
        entry = out.setdefault(shape, {"after_mad": [], "before_mad": [], "before_width_kept": []})
        entry["after_mad"].append(float(np.abs(after - evaluation).mean()))
        entry["before_width_kept"].append((x1 - x0) / width)
        if (x1 - x0) == width:  # only then is the old sample the same view as evaluation's
            entry["before_mad"].append(float(np.abs(old["image"] - evaluation).mean()))
    return {
        shape: {k: (float(np.mean(v)) if v else None) for k, v in entry.items()}
        for shape, entry in out.items()
    }


def gpu_side() -> dict:
    implied_tflops = MMSEG_B4_V100_FPS * B4_TRAIN_GFLOP_PER_SAMPLE / 3 / 1000
    efficiency = implied_tflops / V100_FP32_TFLOPS
    estimate = efficiency * H100_BF16_DENSE_TFLOPS * 1000 / B4_TRAIN_GFLOP_PER_SAMPLE
    ceiling = H100_BF16_DENSE_TFLOPS * 1000 / B4_TRAIN_GFLOP_PER_SAMPLE
    return {"efficiency": efficiency, "estimate_samples_s": estimate, "ceiling_samples_s": ceiling}


def report(result: dict, seconds: float) -> str:
    v = result["variants"]
    before, cached, files = v["before"], v["after, cache"], v["after, no cache"]
    gpu = gpu_side()
    e2e = result["end_to_end_ms"]
    per_sample = e2e["after, cache"]
    feed = WORKERS * 1000 / per_sample
    lines = [
        f"{result['photos']} photos, working size {result['working_size']} px, "
        f"{IMAGE_SIZE} px input, one thread; {seconds:.0f} s",
        "",
        "| transform | ms/sample | decode | augment | processor | samples/s per core |",
        "|---|---|---|---|---|---|",
    ]
    for name, t in v.items():
        shares = "|".join(
            f" {t[s]:.1f} ({t[s] / t['total_ms']:.0%}) " for s in ("decode", "augment", "processor")
        )
        lines.append(f"| {name} | {t['total_ms']:.1f} |{shares}| {1000 / t['total_ms']:.1f} |")
    c = result["cache"]
    lines += [
        "",
        f"training transform, before / after (cache): {before['total_ms'] / cached['total_ms']:.1f}x "
        f"cheaper (goal >= 10x); before / after (no cache): "
        f"{before['total_ms'] / files['total_ms']:.1f}x",
        f"end to end through the package's transform (datasets row, decode or cache read, "
        f"augmentation, processor, copies): before {e2e['before']:.1f} ms/sample, after (cache) "
        f"{e2e['after, cache']:.1f}: {e2e['before'] / e2e['after, cache']:.1f}x cheaper",
        f"cache: built once at {c['build_ms_per_photo']:.0f} ms per photo; "
        f"{c['mib_per_photo']:.2f} MiB per photo on disk",
        f"GPU side: MiT-b4 512 px bf16 training step on one H100, estimated "
        f"{gpu['estimate_samples_s']:.0f} samples/s ({gpu['efficiency']:.0%} of peak, as MMSeg's "
        f"published B4 figure implies on an assumed V100; see RESULTS.md), ceiling "
        f"{gpu['ceiling_samples_s']:.0f} at 100% of peak",
        f"{WORKERS} workers at the end-to-end cached rate feed {feed:.0f} samples/s: "
        f"{'enough' if feed >= gpu['estimate_samples_s'] else 'NOT enough'} for the estimate; "
        f"the ceiling would need {gpu['ceiling_samples_s'] * per_sample / 1000:.0f} workers; "
        f"before: {WORKERS * 1000 / before['total_ms']:.0f} samples/s",
        "",
        "no-augmentation training sample vs evaluation input (mean |difference|, 8-bit levels):",
    ]
    for shape, p in result["parity"].items():
        before_mad = f"{p['before_mad']:.2f}" if p["before_mad"] is not None else "n/a (crop)"
        lines.append(
            f"  {shape}: after {p['after_mad']:.2f}, before {before_mad}; share of the width "
            f"a full-size crop keeps: before {p['before_width_kept']:.0%}, after 100%"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 photo of each shape, 1 round")
    parser.add_argument("--photos", type=int, default=3, help="photos of each shape")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (fastest kept)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    per_shape, rounds = (1, 1) if args.quick else (args.photos, args.rounds)
    start = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="phone-photos-"))
    try:
        pairs = write_photos(workdir / "photos", per_shape)
        result = measure(pairs, rounds, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.perf_counter() - start
    from _common import machine_info

    info = machine_info()
    print(report(result, seconds))
    print(
        f"\nmachine: {info['cpu']}, {info['cores']} cores; {info['date']}; commit {info['commit']}"
    )
    print(f"versions: {info['versions']}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({**result, "gpu": gpu_side(), "machine": info}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
