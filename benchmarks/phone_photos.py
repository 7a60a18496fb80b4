"""What does a training sample of a 12 MP phone photo cost, with and without the resize cache?

    python benchmarks/phone_photos.py                 # 3 photos of each shape, 3 rounds
    python benchmarks/phone_photos.py --quick         # 1 photo of each shape, 1 round
    python benchmarks/phone_photos.py --smoke         # small photos: checks the script in seconds
    python benchmarks/phone_photos.py --large         # also a 200 MP photo: check, cache, predict

Writes, into a temporary folder removed at the end, phone photos with PNG masks: 12 MP 4:3 JPEGs
stored landscape (4032x3024) with EXIF orientation 6, so they are seen portrait, and 12 MP 16:9
JPEGs (4608x2592); synthetic hand scenes rendered at full size with sensor noise, so that they
compress like camera files; 8-bit 0/255 masks. Then, in this one process with one thread
everywhere, each photo goes through the package's own transforms, as a data-loader worker runs
them (``Dataset.__getitem__`` on the split ``attach_transforms`` returns):

- ``training, from the cache``: the default, reading the Arrow file ``build_resized_cache``
  writes once (its one-off cost per photo is reported too);
- ``training, --resize_cache false``: decoding each file every epoch (JPEG at reduced scale);
- ``evaluation``: the full photo through the processor's resize.

Times are CPU milliseconds of the measuring thread (one core, whatever else loads a shared
machine), the fastest round of each photo, averaged over photos. Also reported: how far a
training sample without augmentation is from the evaluation input of the same photo (mean
absolute difference, 8-bit levels), and whether 8 workers feed a MiT-b4 512 px bf16 training
step on one H100, whose rate is estimated from published figures (the constants below;
``benchmarks/RESULTS.md`` gives the sources).
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import SEED, format_table, machine_info  # noqa: E402 - after the thread settings

IMAGE_SIZE = 512
CROP_SCALE_MIN = 0.3  # the package default
SHAPES = {
    # name: (stored width, stored height, EXIF orientation)
    "12 MP 4:3, EXIF 6": (4032, 3024, 6),
    "12 MP 16:9": (4608, 2592, 1),
}
SMOKE_SCALE = 8  # --smoke divides each side by this
# GPU side of the question (benchmarks/RESULTS.md says where each number comes from).
B4_TRAIN_GFLOP_PER_SAMPLE = 3 * 187.4  # forward counted with torch's FlopCounterMode, x3
H100_BF16_DENSE_TFLOPS = 989.0
MMSEG_B4_V100_FPS = 15.45  # published MMSegmentation figure, fp32 inference at 512x512
V100_FP32_TFLOPS = 15.7
WORKERS = 8
LARGE = (16320, 12240)  # a 200 MP phone sensor (e.g. a 2024 flagship), stored landscape
# Each step on the large photo runs in a fresh process; it prints its own peak memory (VmHWM,
# which, unlike ru_maxrss, does not carry a parent's peak across fork and exec).
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


def write_photos(root: Path, per_shape: int, scale: int) -> list[tuple[str, str]]:
    """Write the phone photos and masks; returns ``(photo path, shape name)`` pairs."""
    import numpy as np
    from PIL import Image

    from nail_segformer.synthetic import render_sample

    (root / "Images").mkdir(parents=True)
    (root / "Masks").mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    out = []
    for shape_index, (name, (width, height, orientation)) in enumerate(SHAPES.items()):
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
            out.append((str(root / "Images" / f"{stem}.jpg"), name))
    return out


def _cpu_ms(fn) -> float:
    """CPU milliseconds of this thread (the cost on one core, whatever else loads the machine)."""
    start = time.thread_time()
    fn()
    return (time.thread_time() - start) * 1000


def measure(root: Path, rounds: int, image_size: int) -> dict:
    import cv2
    import numpy as np
    import torch

    from nail_segformer.data import Pair, build_dataset_dict, find_pairs
    from nail_segformer.data.cache import build_resized_cache
    from nail_segformer.data.transforms import (
        attach_transforms,
        build_train_transforms,
        load_image_processor,
        working_size,
    )

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    processor = load_image_processor(None, size=image_size)
    size = working_size(image_size, CROP_SCALE_MIN)
    pairs = [Pair(p.image, p.mask, p.category, "train") for p in find_pairs(root / "photos").pairs]
    files = build_dataset_dict(pairs)["train"]  # rows in the order of `pairs`
    shapes = [list(SHAPES)[int(Path(p.image).stem.split("_")[1])] for p in pairs]
    start = time.thread_time()
    cached, problems = build_resized_cache(files, size, cache_dir=root / "cache")
    build_ms = (time.thread_time() - start) * 1000 / len(files)
    if problems:
        raise RuntimeError(f"the cache left out {problems}")
    cache_mib = sum(p.stat().st_size for p in (root / "cache").glob("*.arrow")) / 2**20

    augment = build_train_transforms(image_size, image_size, seed=SEED)
    splits = {
        "training, from the cache": attach_transforms(
            {"train": cached}, processor, augment, False, working_size=size
        )["train"],
        "training, --resize_cache false": attach_transforms(
            {"train": files}, processor, augment, False, working_size=size
        )["train"],
        "evaluation": attach_transforms({"validation": files}, processor, None)["validation"],
    }
    best = {name: [float("inf")] * len(files) for name in splits}
    for _ in range(rounds):
        for index in range(len(files)):  # interleaved, so a busy moment hits every variant
            for name, split in splits.items():
                ms = _cpu_ms(lambda split=split, index=index: split[index])
                best[name][index] = min(best[name][index], ms)

    # Without augmentation a training sample should show the pixels evaluation shows.
    plain = {"hflip": 0.0, "rotate_p": 0.0, "color_p": 0.0, "blur_p": 0.0, "compression_p": 0.0}
    still = build_train_transforms(image_size, image_size, scale=(1.0, 1.0), **plain)
    plain_train = attach_transforms({"train": cached}, processor, still, False, working_size=size)[
        "train"
    ]
    parity = {}
    for index, shape in enumerate(shapes):
        train_pixels = np.asarray(plain_train[index]["pixel_values"])
        eval_pixels = np.asarray(splits["evaluation"][index]["pixel_values"])
        std = np.asarray(processor.image_std).reshape(3, 1, 1)  # back to 8-bit levels
        difference = float(np.abs((train_pixels - eval_pixels) * std * 255).mean())
        parity.setdefault(shape, []).append(difference)
    return {
        "photos": len(files),
        "working_size": size,
        "ms_per_sample": {name: float(np.mean(times)) for name, times in best.items()},
        "cache": {"build_ms_per_photo": build_ms, "mib_per_photo": cache_mib / len(files)},
        "parity_levels": {shape: float(np.mean(v)) for shape, v in parity.items()},
    }


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
    for folder in ("Images", "Masks"):
        (work / "large" / folder).mkdir(parents=True)
    sample.image.resize((width, height), Image.Resampling.BILINEAR).save(
        work / "large" / "Images" / "large.jpg", quality=92
    )
    sample.mask.resize((width, height), Image.Resampling.NEAREST).save(
        work / "large" / "Masks" / "large.png"
    )
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


def large_report(large: dict) -> str:
    rows = [[name, f"{s['seconds']:.1f}", s["peak_mib"]] for name, s in large["steps"].items()]
    title = f"one {large['megapixels']:.0f} MP photo and its mask, each step in a fresh process:"
    return title + "\n" + format_table(["step", "seconds", "peak memory MiB"], rows)


def gpu_side() -> dict:
    implied_tflops = MMSEG_B4_V100_FPS * B4_TRAIN_GFLOP_PER_SAMPLE / 3 / 1000
    efficiency = implied_tflops / V100_FP32_TFLOPS
    estimate = efficiency * H100_BF16_DENSE_TFLOPS * 1000 / B4_TRAIN_GFLOP_PER_SAMPLE
    ceiling = H100_BF16_DENSE_TFLOPS * 1000 / B4_TRAIN_GFLOP_PER_SAMPLE
    return {"efficiency": efficiency, "estimate_samples_s": estimate, "ceiling_samples_s": ceiling}


def report(result: dict) -> str:
    ms = result["ms_per_sample"]
    cached, files = ms["training, from the cache"], ms["training, --resize_cache false"]
    gpu, feed = gpu_side(), WORKERS * 1000 / cached
    rows = [[name, f"{value:.1f}", f"{1000 / value:.1f}"] for name, value in ms.items()]
    cache = result["cache"]
    lines = [
        format_table(["transform", "CPU ms per sample", "samples/s per core"], rows),
        "",
        f"the cache makes a training sample {files / cached:.1f}x cheaper than decoding the "
        f"files every epoch; it costs {cache['build_ms_per_photo']:.0f} ms of one core per "
        f"photo, once, and {cache['mib_per_photo']:.2f} MiB per photo on disk",
        f"GPU side: MiT-b4 512 px bf16 training step on one H100, estimated "
        f"{gpu['estimate_samples_s']:.0f} samples/s ({gpu['efficiency']:.0%} of peak, as MMSeg's "
        f"published B4 figure implies on an assumed V100); ceiling "
        f"{gpu['ceiling_samples_s']:.0f} at 100% of peak",
        f"{WORKERS} workers from the cache feed {feed:.0f} samples/s: "
        f"{'enough' if feed >= gpu['estimate_samples_s'] else 'NOT enough'} for the estimate; "
        f"the ceiling would need {gpu['ceiling_samples_s'] * cached / 1000:.0f} workers",
        "no-augmentation training sample vs evaluation input (mean |difference|, 8-bit levels): "
        + ", ".join(f"{shape} {v:.2f}" for shape, v in result["parity_levels"].items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 photo of each shape, 1 round")
    parser.add_argument(
        "--smoke", action="store_true", help=f"--quick at 1/{SMOKE_SCALE} of the size a side"
    )
    parser.add_argument("--photos", type=int, default=3, help="photos of each shape")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (fastest kept)")
    parser.add_argument(
        "--large", action="store_true", help="also check, cache and predict a 200 MP photo"
    )
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    quick = args.quick or args.smoke
    per_shape, rounds = (1, 1) if quick else (args.photos, args.rounds)
    scale, image_size = (SMOKE_SCALE, 128) if args.smoke else (1, IMAGE_SIZE)
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
        print("\n" + large_report(result["large"]))
    print(f"\n{time.perf_counter() - started:.0f} s; {info['summary']}")
    if args.json:
        payload = {**result, "gpu": gpu_side(), "machine": info}
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
