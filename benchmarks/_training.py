"""Sections 1 and 2: the training loop against its ceiling, and the data pipeline alone.

Section 1 runs, in one process, the package's full Trainer loop (``build_trainer``, eval and
saving off) and the bare model step on tensors already in memory, one step of each in turn, and
divides their samples/s (see :func:`job_train`).

Section 2 runs the training split exactly as ``build_trainer`` prepares it (``set_transform``)
with ``default_data_collator`` through a ``DataLoader`` with 0, 1 and 2 workers, and times each
stage of the transform in one process (the profile).

Each job runs in its own process (``run_child``), with the entry points' process option (the
mmap threshold) set unless ``NAIL_SEGFORMER_PROCESS_OPTIONS=0`` (see ``_common.child_main``).
"""

from __future__ import annotations

import time

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SEED, child_main, seed_everything


def _trainer_setup(
    data_root: str, out_dir: str, preset: str, size: int, batch: int, workers: int, max_steps: int
):
    """The package's own objects, built the way ``train.main`` builds them (eval and saves off)."""
    from nail_segformer.data import load_splits
    from nail_segformer.train import parse_args
    from nail_segformer.train.build import build_model_and_processor, build_trainer

    argv = [
        "--data_root", data_root, "--output_dir", out_dir,
        "--from_scratch_preset", preset, "--image_size", str(size),
        "--per_device_train_batch_size", str(batch),
        "--dataloader_num_workers", str(workers),
        "--max_steps", str(max_steps),
        "--eval_strategy", "no", "--save_strategy", "no", "--logging_strategy", "no",
        "--load_best_model_at_end", "false",
        "--use_cpu", "true", "--seed", str(SEED), "--disable_tqdm", "true",
    ]  # fmt: skip
    data_args, model_args, training_args = parse_args(argv)
    dataset_dict, _, _ = load_splits(data_root, validation_fraction=0.1, test_fraction=0.0)
    model, processor = build_model_and_processor(model_args, data_args, training_args.seed)
    trainer, datasets = build_trainer(
        model, processor, dataset_dict, data_args, model_args, training_args
    )
    return trainer, datasets, model_args, data_args, training_args


def _bare_steps(model, optimizer, loss_fn, batch: dict, steps: int) -> list[float]:
    """Seconds of each forward + loss + backward + optimizer step on in-memory tensors."""
    times = []
    model.train()
    for _ in range(steps):
        start = time.perf_counter()
        outputs = model(pixel_values=batch["pixel_values"])
        loss = loss_fn(outputs, batch["labels"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times


class _ChildrenCpu:
    """CPU seconds used by this process's children (DataLoader workers) since the last call.

    Workers come and go (one set per epoch), so each one's total is tracked by pid.
    """

    def __init__(self):
        import psutil

        self.process = psutil.Process()
        self.seen: dict[int, float] = {}

    def delta(self) -> float:
        import psutil

        used = 0.0
        for child in self.process.children(recursive=True):
            try:
                times = child.cpu_times()
            except psutil.Error:
                continue
            total = times.user + times.system
            used += total - self.seen.get(child.pid, 0.0)
            self.seen[child.pid] = total
        return used


def job_train(
    data_root: str,
    out_dir: str,
    preset: str,
    size: int,
    batch: int,
    workers: int,
    warmup: int,
    cycles: int,
) -> dict:
    """Section 1: Trainer-loop steps interleaved one for one with bare steps, same process.

    After ``warmup`` Trainer steps, every Trainer step is followed (from ``on_step_end``) by one
    bare step, ``cycles`` times; each rate is the batch over its median step time. Interleaving
    cancels most of the load changes of a shared machine; the data loader's workers have
    refilled their queue by the end of a Trainer step (loading takes a few percent of a step),
    so the bare step does not pay for them.
    """
    import os
    import statistics

    import torch
    from transformers import Trainer, TrainerCallback, default_data_collator

    import nail_segformer
    from nail_segformer.data import ID2LABEL
    from nail_segformer.model import build_model
    from nail_segformer.train.build import build_loss

    seed_everything()
    trainer, datasets, model_args, _, training_args = _trainer_setup(
        data_root, out_dir, preset, size, batch, workers, warmup + cycles
    )
    # The bare step: same preset and seed, same loss and optimizer class, one collated batch of
    # real augmented samples kept in memory.
    train = datasets["train"]
    tensors = default_data_collator(train.__getitems__([i % len(train) for i in range(batch)]))
    bare_model = build_model(preset, ID2LABEL, seed=training_args.seed)
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(
        training_args, bare_model
    )
    optimizer = optimizer_cls(
        bare_model.parameters(), weight_decay=training_args.weight_decay, **optimizer_kwargs
    )
    loss_fn = build_loss(model_args, train).as_trainer_loss()

    workers_cpu = _ChildrenCpu()

    class Interleave(TrainerCallback):
        def __init__(self):
            self.trainer_steps: list[float] = []
            self.bare_steps: list[float] = []
            self.trainer_cpu: list[float] = []  # this process + loader workers, per step
            self.bare_cpu: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.last, self.last_cpu = time.perf_counter(), time.process_time()
            workers_cpu.delta()

        def on_step_end(self, args, state, control, **kwargs):
            now, cpu = time.perf_counter(), time.process_time()
            self.trainer_steps.append(now - self.last)
            self.trainer_cpu.append(cpu - self.last_cpu + workers_cpu.delta())
            if state.global_step > warmup:
                self.bare_steps += _bare_steps(bare_model, optimizer, loss_fn, tensors, 1)
                self.bare_cpu.append(time.process_time() - cpu)
            self.last, self.last_cpu = time.perf_counter(), time.process_time()

    timer = Interleave()
    trainer.add_callback(timer)
    _bare_steps(bare_model, optimizer, loss_fn, tensors, 1)  # first-call allocations
    load_before = os.getloadavg()[0]
    trainer.train()
    load_after = os.getloadavg()[0]

    measured = timer.trainer_steps[warmup:]
    bare = timer.bare_steps
    return {
        "trainer_cpu_per_step": statistics.median(timer.trainer_cpu[warmup:]),
        "bare_cpu_per_step": statistics.median(timer.bare_cpu),
        "trainer_rate": batch / statistics.median(measured),
        "trainer_rate_mean": batch * len(measured) / sum(measured),
        "trainer_startup_s": sum(timer.trainer_steps[:warmup]),
        "bare_rate": batch / statistics.median(bare),
        "bare_rate_mean": batch * len(bare) / sum(bare),
        "trainer_step_times": measured,
        "bare_step_times": bare,
        "torch_threads": torch.get_num_threads(),
        "optimizer": optimizer_cls.__name__,
        "load_before": load_before,
        "load_after": load_after,
        "package": str(nail_segformer.__file__),
    }


def _time_loader(dataset, batch: int, batches: int, workers: int) -> dict:
    """Pass ``batches`` random batches through a DataLoader; rates and the first batch's hash."""
    import hashlib

    import torch
    from torch.utils.data import DataLoader, RandomSampler
    from transformers import default_data_collator

    torch.manual_seed(SEED)  # the transform draws each sample's augmentation seed from it
    sampler = RandomSampler(
        dataset, replacement=True, num_samples=batches * batch,
        generator=torch.Generator().manual_seed(SEED),
    )  # fmt: skip
    loader = DataLoader(
        dataset, batch_size=batch, sampler=sampler, num_workers=workers,
        collate_fn=default_data_collator,
    )  # fmt: skip
    start = time.perf_counter()
    iterator = iter(loader)
    first_batch = next(iterator)
    first = time.perf_counter()
    for _ in iterator:
        pass
    end = time.perf_counter()
    digest = hashlib.sha256()
    for key in ("pixel_values", "labels"):
        digest.update(first_batch[key].numpy().tobytes())
    return {
        "steady_rate": (batches - 1) * batch / (end - first),
        "first_batch_s": first - start,
        "rate_with_startup": batches * batch / (end - start),
        "first_batch_sha256": digest.hexdigest(),
    }


def job_pipeline(
    data_root: str,
    out_dir: str,
    size: int,
    batch: int,
    workers: list[int],
    batches: int,
    rounds: int,
) -> dict:
    """Section 2: samples/s of the package's training transform + collate through a DataLoader.

    The training split comes from ``build_trainer`` (tiny model; the model plays no part), so
    this measures the augmentation and processor settings training really uses. Each worker
    count runs ``rounds`` times in turn and keeps its fastest round.
    """
    seed_everything()
    _, datasets, _, _, _ = _trainer_setup(data_root, out_dir, "tiny", size, batch, 0, max_steps=1)
    train = datasets["train"]
    results: dict[str, dict] = {}
    for _ in range(rounds):
        for count in workers:
            run = _time_loader(train, batch, batches, count)
            if run["steady_rate"] > results.get(str(count), {}).get("steady_rate", 0.0):
                results[str(count)] = run
    return results


def job_profile(data_root: str, size: int, batch: int, samples: int) -> dict:
    """Milliseconds per sample of each stage of the training transform, in one process."""
    import cv2
    import numpy as np
    from transformers import default_data_collator

    from nail_segformer.data import load_image, load_labels
    from nail_segformer.data.transforms import (
        SegmentationTransform,
        build_train_transforms,
        load_image_processor,
    )

    seed_everything()
    photos = sorted(
        str(p) for p in (__import__("pathlib").Path(data_root) / "Images").rglob("*.jpg")
    )
    photos = (photos * (samples // len(photos) + 1))[:samples]
    masks = [p.replace("/Images/", "/Masks/").rsplit(".", 1)[0] + ".png" for p in photos]
    processor = load_image_processor(None, size=size)
    augment = build_train_transforms(size, size, seed=SEED)

    def per_sample(fn, items):
        start = time.perf_counter()
        out = [fn(item) for item in items]
        return (time.perf_counter() - start) * 1000 / len(items), out

    stages = {}
    stages["decode photo (load_image)"], images = per_sample(load_image, photos)
    stages["decode mask (load_labels)"], labels = per_sample(load_labels, masks)
    stages["albumentations (crop, flip, affine, colour, blur, jpeg)"], augmented = per_sample(
        lambda pair: augment(image=np.asarray(pair[0]), mask=pair[1]),
        list(zip(images, labels, strict=True)),
    )
    chunks = [augmented[i : i + batch] for i in range(0, len(augmented), batch)]

    def run_processor(chunk):
        # As SegmentationTransform calls it for training batches, which augment already
        # returns at the training size: no resize.
        return processor(
            images=[a["image"] for a in chunk], segmentation_maps=[a["mask"] for a in chunk],
            do_reduce_labels=False, do_resize=False, return_tensors="np",
        )  # fmt: skip

    start = time.perf_counter()
    encoded = [run_processor(chunk) for chunk in chunks]
    stages["processor (rescale, normalize, labels; no resize)"] = (
        (time.perf_counter() - start) * 1000 / samples
    )
    start = time.perf_counter()
    features = []
    for enc in encoded:
        pixel_values = list(enc["pixel_values"].astype(np.float32))
        label_maps = list(enc["labels"].astype(np.int64))
        features += [
            {"pixel_values": p, "labels": lab}
            for p, lab in zip(pixel_values, label_maps, strict=True)
        ]
    stages["float32/int64 copies after the processor"] = (
        (time.perf_counter() - start) * 1000 / samples
    )
    start = time.perf_counter()
    for i in range(0, len(features), batch):
        default_data_collator(features[i : i + batch])
    stages["collate (default_data_collator)"] = (time.perf_counter() - start) * 1000 / samples

    transform = SegmentationTransform(processor, augment, resize=False)
    batch_values = [{"path": p} for p in photos]
    mask_values = [{"path": m} for m in masks]
    start = time.perf_counter()
    for i in range(0, samples, batch):
        transform({"image": batch_values[i : i + batch], "label": mask_values[i : i + batch]})
    total = (time.perf_counter() - start) * 1000 / samples
    return {
        "stages_ms": stages,
        "transform_ms": total,
        "cv2_threads": cv2.getNumThreads(),
    }


if __name__ == "__main__":
    child_main({"train": job_train, "pipeline": job_pipeline, "profile": job_profile})
