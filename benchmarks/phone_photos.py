"""What does a training sample of a 12 MP phone photo cost, with and without the resize cache?

    python benchmarks/phone_photos.py                 # 3 photos of each shape, 3 rounds
    python benchmarks/phone_photos.py --smoke         # small photos: checks the script in seconds
    python benchmarks/phone_photos.py --large         # also a 200 MP photo: check, cache, predict

Writes phone photos with PNG masks into a temporary folder: 12 MP 4:3 JPEGs stored landscape
with EXIF orientation 6, and 12 MP 16:9 JPEGs, synthetic hands with sensor noise so that they
compress like camera files. In this one process with one thread, each photo goes through the
package's own transforms, as a data-loader worker runs them:

- ``training, from the cache``: the default, reading the Arrow file ``build_resized_cache``
  writes once (its one-off cost per photo is reported too);
- ``training, --resize_cache false``: decoding each file every epoch (JPEG at reduced scale);
- ``evaluation``: the full photo through the processor's resize; ``evaluation, from its cache``: what
  ``build_eval_cache`` stored of it (the same batches, bit for bit).

Times are CPU milliseconds of the measuring thread (one core, whatever else loads a shared
machine), the fastest round of each photo, averaged over photos; and whether 8 workers feed a
MiT-b4 512 px bf16 training step on one H100, whose rate ``benchmarks/RESULTS.md`` estimates
from published figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# One core: set before numpy, torch and OpenCV start their thread pools.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SEED, format_table, machine_info  # noqa: E402 - after the thread settings

IMAGE_SIZE = 512
CROP_SCALE_MIN = 0.3  # the package default
# 12 MP 4:3 stored landscape with EXIF 6, and 12 MP 16:9: (stored width, height, orientation)
SHAPES = ((4032, 3024, 6), (4608, 2592, 1))
SMOKE_SCALE = 8  # --smoke divides each side by this
# MiT-b4 512 px bf16 training samples/s on one H100, estimated and at 100% of its peak
# (benchmarks/RESULTS.md, "Phone photos", derives both from published figures).
H100_B4_ESTIMATE, H100_B4_CEILING = 324, 1759
WORKERS = 8
LARGE = (16320, 12240)  # a 200 MP phone sensor (e.g. a 2024 flagship), stored landscape
# Each step on the large photo runs in a fresh process, which prints its own peak memory.
_LARGE_STEPS = {
    "check (python -m nail_segformer.data)": (
        "from nail_segformer.data.cli import main; main([f'{work}/large'])"
    ),
    "resize cache (built once)": (
        "from nail_segformer import data; from nail_segformer.data.cache import "
        "build_resized_cache; pairs = [data.Pair(p.image, p.mask, p.category, 'train') for p in "
        "data.find_pairs(f'{work}/large').pairs]; build_resized_cache(data.build_dataset_dict("
        "pairs)['train'], 935, cache_dir=f'{work}/cache-large')"
    ),
    "predict (tiny model, resize mode)": (
        "from nail_segformer.predict.cli import main; main(['--model', f'{work}/model', "
        "'--input', f'{work}/large/Images', '--output', f'{work}/out', '--no_progress'])"
    ),
}


def write_photos(root: Path, per_shape: int, scale: int) -> None:
    """Write the phone photos and their masks under ``root``."""
    import numpy as np
    from PIL import Image

    from nail_segformer.synthetic import render_sample

    (root / "Images").mkdir(parents=True)
    (root / "Masks").mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    for shape_index, (width, height, orientation) in enumerate(SHAPES):
        width, height = width // scale, height // scale
        for i in range(per_shape):
            seen = (height, width) if orientation == 6 else (width, height)
            sample = render_sample(SEED, 10 * shape_index + i, "2", size=seen)
            pixels = np.asarray(sample.image, dtype=np.int16)
            pixels = pixels + rng.normal(0, 3, pixels.shape).astype(np.int16)
            photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            exif = Image.Exif()
            if orientation == 6:
                photo = photo.transpose(Image.Transpose.ROTATE_90)  # stored as the camera wrote it
                exif[0x0112] = 6
            stem = f"phone_{shape_index}_{i}"
            photo.save(root / "Images" / f"{stem}.jpg", quality=92, exif=exif)
            sample.mask.save(root / "Masks" / f"{stem}.png")


def measure(root: Path, rounds: int, image_size: int) -> dict:
    import cv2
    import numpy as np
    import torch

    from nail_segformer.data import Pair, build_dataset_dict, find_pairs
    from nail_segformer.data import transforms as t
    from nail_segformer.data.cache import build_eval_cache, build_resized_cache
    from nail_segformer.data.transforms import decode_cached, load_working_pair

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    processor = t.load_image_processor(None, size=image_size)
    size = t.working_size(image_size, CROP_SCALE_MIN)
    pairs = [Pair(p.image, p.mask, p.category, "train") for p in find_pairs(root / "photos").pairs]
    files = build_dataset_dict(pairs)["train"]  # rows in the order of `pairs`
    start = time.thread_time()
    cached, problems = build_resized_cache(files, size, cache_dir=root / "cache")
    build_ms = (time.thread_time() - start) * 1000 / len(files)
    if problems:
        raise RuntimeError(f"the cache left out {problems}")
    cache_mib = sum(p.stat().st_size for p in (root / "cache").glob("*.arrow")) / 2**20
    start = time.thread_time()
    eval_cached, _ = build_eval_cache(files, processor, cache_dir=root / "eval-cache")
    eval_build_ms = (time.thread_time() - start) * 1000 / len(files)
    eval_mib = sum(p.stat().st_size for p in (root / "eval-cache").glob("*.arrow")) / 2**20
    photos_mib = sum(os.path.getsize(p.image) for p in pairs) / 2**20
    # How far the (lossy) training copy is from the exact working copy, in 8-bit levels.
    levels = [np.abs(decode_cached(row["image_encoded"], row["labels_encoded"])[0].astype(int)
                     - load_working_pair(pair.image, pair.mask, size)[0]).mean()
              for row, pair in zip(cached, pairs, strict=True)]  # fmt: skip

    def training(dataset, augment):
        return t.attach_transforms({"train": dataset}, processor, augment, False,
                                   working_size=size)["train"]  # fmt: skip

    augment = t.build_train_transforms(image_size, image_size, seed=SEED)
    splits = {"training, from the cache": training(cached, augment),
              "training, --resize_cache false": training(files, augment),
              "evaluation": t.attach_transforms({"validation": files}, processor, None)["validation"],
              "evaluation, from its cache": t.attach_transforms({"validation": eval_cached}, processor, None)["validation"]}  # fmt: skip
    best = {name: [float("inf")] * len(files) for name in splits}
    for _ in range(rounds):
        for index in range(len(files)):  # interleaved, so a busy moment hits every variant
            for name, split in splits.items():
                # CPU time of this thread: the cost on one core, whatever else loads the machine.
                start = time.thread_time()
                split[index]
                best[name][index] = min(best[name][index], (time.thread_time() - start) * 1000)
    return {"photos": len(files), "working_size": size,
            "ms_per_sample": {name: float(np.mean(times)) for name, times in best.items()},
            "photo_mib": photos_mib / len(files), "training_copy_levels": float(np.mean(levels)),
            "cache": {"build_ms_per_photo": build_ms, "mib_per_photo": cache_mib / len(files)},
            "eval_cache": {"build_ms_per_photo": eval_build_ms, "mib_per_photo": eval_mib / len(files)}}  # fmt: skip


def measure_large(work: Path, scale: int) -> dict:
    """Seconds and peak memory (MiB) of each step of :data:`_LARGE_STEPS` on one large photo."""
    import subprocess

    from PIL import Image

    from nail_segformer.data.transforms import load_image_processor
    from nail_segformer.model import build_model
    from nail_segformer.synthetic import render_sample

    width, height = LARGE[0] // scale, LARGE[1] // scale
    # Painted at 1/16 of the area and enlarged: rendering 200 MP would cost more than the steps.
    sample = render_sample(SEED, 99, "2", size=(width // 4, height // 4))
    for folder, image, resample, name in (
        ("Images", sample.image, Image.Resampling.BILINEAR, "large.jpg"),
        ("Masks", sample.mask, Image.Resampling.NEAREST, "large.png"),
    ):
        (work / "large" / folder).mkdir(parents=True)
        image.resize((width, height), resample).save(work / "large" / folder / name, quality=92)
    build_model("tiny", seed=SEED).save_pretrained(work / "model")
    load_image_processor(None, size=IMAGE_SIZE).save_pretrained(work / "model")
    peak = "print(int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) // 1024)"
    result = {"megapixels": width * height / 1e6, "steps": {}}
    for name, code in _LARGE_STEPS.items():
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", f"work = {str(work)!r}\n{code}\n{peak}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        result["steps"][name] = {"seconds": seconds, "peak_mib": int(done.stdout.split()[-1])}
    return result


def report(result: dict) -> str:
    ms = result["ms_per_sample"]
    cached, files = ms["training, from the cache"], ms["training, --resize_cache false"]
    feed = WORKERS * 1000 / cached
    rows = [[name, f"{value:.1f}", f"{1000 / value:.1f}"] for name, value in ms.items()]
    cache = result["cache"]
    lines = [
        format_table(["transform", "CPU ms per sample", "samples/s per core"], rows),
        "",
        f"the cache makes a training sample {files / cached:.1f}x cheaper than decoding the "
        f"files every epoch; it costs {cache['build_ms_per_photo']:.0f} ms of one core per "
        f"photo, once, and {cache['mib_per_photo']:.2f} MiB per photo on disk",
        f"the evaluation cache makes an evaluation sample {ms['evaluation'] / ms['evaluation, from its cache']:.0f}x "
        f"cheaper (bit for bit the same batches); it costs {result['eval_cache']['build_ms_per_photo']:.0f} ms "
        f"per photo, once, and {result['eval_cache']['mib_per_photo']:.2f} MiB per photo on disk",
        f"the photos take {result['photo_mib']:.2f} MiB each: the training cache is "
        f"{cache['mib_per_photo'] / result['photo_mib']:.1%} of that, the evaluation cache "
        f"{result['eval_cache']['mib_per_photo'] / result['photo_mib']:.1%}; the training copy is "
        f"{result['training_copy_levels']:.2f} levels from the exact pixels on average",
        f"{WORKERS} workers from the cache feed {feed:.0f} samples/s: "
        f"{'enough' if feed >= H100_B4_ESTIMATE else 'NOT enough'} for MiT-b4 on one H100 "
        f"(estimated {H100_B4_ESTIMATE} samples/s); its ceiling ({H100_B4_CEILING} at 100% of "
        f"peak) would need {H100_B4_CEILING * cached / 1000:.0f} workers",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help=f"1 photo a shape at 1/{SMOKE_SCALE}")
    parser.add_argument("--large", action="store_true", help="also a 200 MP photo")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    per_shape, rounds, scale, image_size = (
        (1, 1, SMOKE_SCALE, 128) if args.smoke else (3, 3, 1, 512)
    )
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="phone-photos-"))
    try:
        write_photos(workdir / "photos", per_shape, scale)
        result = measure(workdir, rounds, image_size)
        if args.large:
            result["large"] = measure_large(workdir, scale)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    info = machine_info()
    print(report(result))
    if "large" in result:
        large = result["large"]
        rows = [[name, f"{s['seconds']:.1f}", s["peak_mib"]] for name, s in large["steps"].items()]
        print(f"\none {large['megapixels']:.0f} MP photo and its mask, each step in a fresh "
              "process:\n" + format_table(["step", "seconds", "peak memory MiB"], rows))  # fmt: skip
    print(f"\n{time.perf_counter() - started:.0f} s; {info['summary']}")
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "machine": info}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
