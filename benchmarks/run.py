"""Does each job cost no more through the package than done the plain way (ratios in one run)?

Each figure is a ratio measured side by side on one machine, each measurement in a fresh
process with the option the entry points set (``nail_segformer.runtime``):

1. training: the package's Trainer loop against the bare model step on tensors in memory;
2. evaluation: peak memory and time of ``trainer.evaluate()`` (a confusion matrix per batch)
   against the Hugging Face example's way (keep every logit, then ``evaluate``'s ``mean_iou``),
   and its time against the bare forward pass over the same DataLoader;
3. inference: ``Predictor`` (batched) against ``pipeline("image-segmentation")``, same model
   and photos, and whether their nail masks agree; the ONNX export's int8 file (static QDQ)
   against fp32 and against dynamic quantization, in size and forward-pass speed; and, as users
   run them, whole processes over photo files: ``python -m nail_segformer.predict`` (torch,
   ONNX fp32 and int8; masks only, and with today's default overlays) against a script calling
   ``pipeline("image-segmentation")`` on each path and saving its nail mask, on small photos
   (``python -m nail_segformer.synthetic DIR --n 48 --seed 7``) and 12 MP phone JPEGs;
4. which model for which device: MiT-nano and MiT-b0 at 256 and 512 px in PyTorch, ONNX fp32
   and ONNX int8, one photo's latency on one thread and photos/s on two, with file sizes.

    python benchmarks/run.py            # full run (about 15 minutes on 2 idle CPU cores)
    python benchmarks/run.py --smoke    # seconds: checks that every figure is produced
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# isort: off
from _common import SEED, child_main, format_table, machine_info, make_photos  # noqa: E402
from _common import peak_mib, run_child  # noqa: E402

# isort: on
CONFIGS = {
    "full": {"photos": 512,
             "train": {"preset": "mit-b0", "size": 512, "batch": 8, "workers": 2, "steps": 6},
             "eval": {"preset": "tiny", "size": 512, "batch": 8, "workers": 2, "n": [64, 512]},
             "eval_time": {"preset": "mit-b0", "size": 512, "batch": 8, "workers": 2, "n": 32},
             "infer": {"preset": "mit-b0", "size": 512, "n": 32, "batch": 8},
             "files": {"small": 48, "phone_per_shape": 3, "phone_scale": 1, "rounds": 2},
             "devices": {"presets": ["mit-nano", "mit-b0"], "sizes": [256, 512], "runs": 7,
                         "batch": 4}},
    "smoke": {"photos": 8,
              "train": {"preset": "tiny", "size": 64, "batch": 2, "workers": 0, "steps": 1},
              "eval": {"preset": "tiny", "size": 64, "batch": 2, "workers": 0, "n": [4, 8]},
              "eval_time": {"preset": "tiny", "size": 64, "batch": 2, "workers": 0, "n": 4},
              "infer": {"preset": "tiny", "size": 64, "n": 4, "batch": 2},
              "files": {"small": 4, "phone_per_shape": 1, "phone_scale": 8, "rounds": 1},
              "devices": {"presets": ["tiny"], "sizes": [64], "runs": 1, "batch": 2}},
}  # fmt: skip
# Goals: the package's way may cost this much at most (ratios, ours ÷ baseline or inverse).
TRAINING_GOAL, EVAL_TIME_GOAL, INFERENCE_GOAL = 0.90, 1.10, 3.0
# Peak RSS moves by a few MB between identical runs; a smaller growth counts as this floor.
RSS_NOISE_MB = 8.0


def _trainer(data_root: str, out_dir: str, preset: str, size: int, batch: int, workers: int,
             extra: list[str], dataset_dict=None):  # fmt: skip
    """The package's Trainer, built as ``run_finetune.py`` builds it."""
    from nail_segformer.data import load_splits
    from nail_segformer.train import parse_args
    from nail_segformer.train.build import build_model_and_processor, build_trainer

    argv = ["--data_root", data_root, "--output_dir", out_dir, "--from_scratch_preset", preset,
            "--image_size", str(size), "--per_device_train_batch_size", str(batch),
            "--per_device_eval_batch_size", str(batch), "--dataloader_num_workers", str(workers),
            "--save_strategy", "no", "--logging_strategy", "no", "--use_cpu", "true",
            "--load_best_model_at_end", "false",
            "--seed", str(SEED), "--disable_tqdm", "true", *extra]  # fmt: skip
    data_args, model_args, training_args = parse_args(argv)
    if dataset_dict is None:
        dataset_dict = load_splits(data_root, validation_fraction=0.1, test_fraction=0.0)[0]
    model, processor = build_model_and_processor(model_args, data_args, training_args.seed)
    trainer, datasets = build_trainer(
        model, processor, dataset_dict, data_args, model_args, training_args
    )
    return trainer, datasets, model_args, training_args


def job_train(data_root: str, out_dir: str, preset: str, size: int, batch: int, workers: int,
              steps: int) -> dict:  # fmt: skip
    """Trainer steps interleaved one for one with bare steps (forward, loss, backward, AdamW
    on one batch kept in memory), so load changes hit both alike; rates from median steps."""
    from transformers import Trainer, TrainerCallback, default_data_collator, set_seed

    from nail_segformer.data import ID2LABEL
    from nail_segformer.model import build_model
    from nail_segformer.train.build import build_loss

    set_seed(SEED)
    warmup = 1
    trainer, datasets, model_args, args = _trainer(
        data_root, out_dir, preset, size, batch, workers,
        ["--max_steps", str(warmup + steps), "--eval_strategy", "no"],
    )  # fmt: skip
    train = datasets["train"]
    tensors = default_data_collator(train.__getitems__([i % len(train) for i in range(batch)]))
    bare = build_model(preset, ID2LABEL, seed=SEED)
    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, bare)
    optimizer = optimizer_cls(bare.parameters(), weight_decay=args.weight_decay, **kwargs)
    loss_fn = build_loss(model_args, train).as_trainer_loss()

    def bare_step() -> float:
        start = time.perf_counter()
        loss_fn(bare(pixel_values=tensors["pixel_values"]), tensors["labels"]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    times = {"trainer": [], "bare": []}

    class Interleave(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step > warmup:
                times["trainer"].append(time.perf_counter() - self.started)
                times["bare"].append(bare_step())

    bare.train()
    bare_step()  # first-call allocations
    trainer.add_callback(Interleave())
    trainer.train()
    return {k: batch / statistics.median(v) for k, v in times.items()}


def _eval_splits(data_root: str, n: int):
    from datasets import Dataset, DatasetDict, Features, Image

    photos = sorted(str(p) for p in (Path(data_root) / "Images").rglob("*.jpg"))[:n]
    masks = [p.replace("/Images/", "/Masks/").rsplit(".", 1)[0] + ".png" for p in photos]
    split = Dataset.from_dict({"image": photos, "label": masks},
                              features=Features({"image": Image(), "label": Image()}))  # fmt: skip
    return DatasetDict({"train": split, "validation": split})


def _example_compute_metrics(eval_pred) -> dict:
    """transformers' ``run_semantic_segmentation.py`` way: all logits upsampled at once."""
    import torch

    from nail_segformer.data import ID2LABEL, IGNORE_INDEX
    from nail_segformer.metrics import load_mean_iou

    logits, labels = eval_pred
    with torch.no_grad():
        predictions = torch.nn.functional.interpolate(
            torch.from_numpy(logits), size=labels.shape[-2:], mode="bilinear",
            align_corners=False).argmax(dim=1).numpy()  # fmt: skip
    return load_mean_iou().compute(predictions=predictions, references=labels,
                                   num_labels=len(ID2LABEL), ignore_index=IGNORE_INDEX)  # fmt: skip


def job_eval(data_root: str, out_dir: str, mode: str, preset: str, size: int, batch: int,
             workers: int, n: int) -> dict:  # fmt: skip
    """One ``evaluate()`` of ``n`` photos in this fresh process ("ours" streams the metric,
    "usual" keeps every logit); with ``mode="time"``, two alternating rounds of it and of the
    bare forward pass over its own DataLoader, the fastest of each kept."""
    import torch
    from transformers import set_seed

    set_seed(SEED)
    streaming = ["--batch_eval_metrics", str(mode != "usual").lower()]
    trainer, _, _, _ = _trainer(data_root, out_dir, preset, size, batch, workers, streaming,
                                _eval_splits(data_root, n))  # fmt: skip
    if mode == "usual":
        trainer.compute_metrics = _example_compute_metrics
    model = trainer.model.eval()

    def forward():
        with torch.inference_mode():
            for inputs in trainer.get_eval_dataloader():
                model(pixel_values=inputs["pixel_values"])

    forward()  # first-call allocations, alike for every mode
    best = {"evaluate": float("inf"), "forward": float("inf")}
    for _ in range(2 if mode == "time" else 1):
        start = time.perf_counter()
        metrics = trainer.evaluate()
        best["evaluate"] = min(best["evaluate"], time.perf_counter() - start)
        if mode == "time":
            start = time.perf_counter()
            forward()
            best["forward"] = min(best["forward"], time.perf_counter() - start)
    return {**best, "peak_mb": peak_mib(), "mean_iou": metrics["eval_mean_iou"]}


def job_infer(data_root: str, model_dir: str, preset: str, size: int, n: int, batch: int) -> dict:
    """Photos/s of ``Predictor`` and the pipeline on the same random-init model (fastest of two
    alternating rounds), and the share of nail-mask pixels on which they agree."""
    import numpy as np
    from transformers import pipeline, set_seed
    from transformers.utils import logging as hf_logging

    from nail_segformer.data import ID2LABEL, load_image
    from nail_segformer.data.transforms import load_image_processor
    from nail_segformer.model import build_model
    from nail_segformer.predict import Predictor

    set_seed(SEED)
    hf_logging.set_verbosity_error()
    build_model(preset, ID2LABEL, seed=SEED).save_pretrained(model_dir)
    load_image_processor(None, size=size).save_pretrained(model_dir)
    photos = [load_image(p) for p in sorted((Path(data_root) / "Images").rglob("*.jpg"))[:n]]
    predictor = Predictor.from_pretrained(model_dir, device="cpu", batch_size=batch)
    segmenter = pipeline("image-segmentation", model=model_dir, device="cpu")
    best = {"ours": float("inf"), "pipeline": float("inf")}
    for _ in range(3):  # the first round warms both up
        for name, run in (("ours", predictor.predict), ("pipeline", segmenter)):
            start = time.perf_counter()
            result = run(photos)
            best[name] = min(best[name], time.perf_counter() - start)
            if name == "ours":
                ours = result
            else:
                theirs = result
    differing = total = 0
    for photo, prediction, segments in zip(photos, ours, theirs, strict=True):
        nail = [np.asarray(s["mask"]) > 0 for s in segments if s["label"] == "nail"]
        reference = nail[0] if nail else np.zeros((photo.height, photo.width), bool)
        differing += int((reference != prediction.mask.astype(bool)).sum())
        total += reference.size
    return {"ours": n / best["ours"], "pipeline": n / best["pipeline"],
            "agreement": 1 - differing / total, "differing": differing}  # fmt: skip


def job_onnx(data_root: str, model_dir: str, preset: str, size: int, n: int, batch: int) -> dict:
    """The ONNX export's forward pass on the same photos: fp32, int8 by static QDQ (what the
    export writes) and int8 by dynamic quantization; fastest of two alternating rounds."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from nail_segformer.data import ID2LABEL, load_image
    from nail_segformer.data.transforms import load_image_processor
    from nail_segformer.export import export_folder
    from nail_segformer.model import build_model

    processor = load_image_processor(None, size=size)
    model = build_model(preset, ID2LABEL, seed=SEED).eval()
    paths = export_folder(model, processor, model_dir, (size, size))
    files = {"fp32": paths["fp32"], "static": paths["int8"], "dynamic": Path(model_dir) / "d.onnx"}
    quantize_dynamic(str(files["fp32"]), str(files["dynamic"]), weight_type=QuantType.QInt8)
    photos = [load_image(p) for p in sorted((Path(data_root) / "Images").rglob("*.jpg"))[:n]]
    x = processor(images=photos, return_tensors="np")["pixel_values"]
    best = {}
    options = ort.SessionOptions()  # as predict's OnnxRunner sets it
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sessions = {k: ort.InferenceSession(str(v), options, providers=["CPUExecutionProvider"])
                for k, v in files.items()}  # fmt: skip
    for _ in range(3):  # the first round warms every session up
        for name, session in sessions.items():
            start = time.perf_counter()
            for i in range(0, n, batch):
                session.run(["logits"], {"pixel_values": x[i : i + batch]})
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    return {**{k: n / v for k, v in best.items()},
            **{f"{k}_mib": v.stat().st_size / 2**20 for k, v in files.items()}}  # fmt: skip


def measure(cfg: dict, work: Path, data: Path) -> list[list]:
    """Every row of the table: question, figure, ours, baseline, ratio, goal, met?"""
    common = {"data_root": str(data), "out_dir": str(work / "out")}
    tc, ec, tm, ic = cfg["train"], cfg["eval"], cfg["eval_time"], cfg["infer"]
    rows = []
    train = run_child("run", {"job": "train", **common, **tc})
    ratio = train["trainer"] / train["bare"]
    rows.append(["1", f"training samples/s, Trainer loop ÷ bare step ({tc['preset']}, "
                 f"{tc['size']}², batch {tc['batch']}, {tc['workers']} workers)",
                 f"{train['trainer']:.3g}", f"{train['bare']:.3g}", ratio,
                 f"≥ {TRAINING_GOAL}", ratio >= TRAINING_GOAL])  # fmt: skip
    small, large = ec["n"]
    runs = {(mode, n): run_child("run", {"job": "eval", **common, **ec, "mode": mode, "n": n})
            for mode in ("ours", "usual") for n in (small, large)}  # fmt: skip
    growth = {
        m: runs[(m, large)]["peak_mb"] - runs[(m, small)]["peak_mb"] for m in ("ours", "usual")
    }
    less = growth["usual"] / max(growth["ours"], RSS_NOISE_MB)
    rows.append(["2", f"evaluate() peak memory growth {small}→{large} photos ({ec['preset']}, "
                 f"{ec['size']}²), usual way ÷ ours", f"{growth['ours']:+.0f} MB",
                 f"{growth['usual']:+.0f} MB", less, "≥ 10", less >= 10])  # fmt: skip
    ours, usual = runs[("ours", large)]["mean_iou"], runs[("usual", large)]["mean_iou"]
    rows.append(["2", f"evaluate() mean IoU, ours and usual ({large} photos)", f"{ours:.6f}",
                 f"{usual:.6f}", ours / usual, "equal", ours == usual])  # fmt: skip
    timed = run_child("run", {"job": "eval", **common, **tm, "mode": "time"})
    ratio = timed["evaluate"] / timed["forward"]
    rows.append(["2", f"evaluate() time ÷ forward over the same DataLoader ({tm['preset']}, "
                 f"{tm['n']} photos)", f"{timed['evaluate']:.2f} s", f"{timed['forward']:.2f} s",
                 ratio, f"≤ {EVAL_TIME_GOAL}", ratio <= EVAL_TIME_GOAL])  # fmt: skip
    infer = run_child("run", {"job": "infer", "data_root": str(data),
                              "model_dir": str(work / "model"), **ic})  # fmt: skip
    ratio = infer["ours"] / infer["pipeline"]
    rows.append(["3", f"photos/s, Predictor ÷ pipeline ({ic['preset']}, {ic['n']} photos, "
                 f"batch {ic['batch']})", f"{infer['ours']:.3g}", f"{infer['pipeline']:.3g}",
                 ratio, f"≥ {INFERENCE_GOAL}", ratio >= INFERENCE_GOAL])  # fmt: skip
    onnx = run_child("run", {"job": "onnx", "data_root": str(data),
                             "model_dir": str(work / "onnx"), **ic})  # fmt: skip
    label = f"({ic['preset']}, {ic['size']} px, batch {ic['batch']})"
    size_ratio = onnx["fp32_mib"] / onnx["static_mib"]
    rows.append(["3", f"ONNX file MiB, fp32 ÷ int8 static QDQ {label}", f"{onnx['fp32_mib']:.1f}",
                 f"{onnx['static_mib']:.1f}", size_ratio, "≥ 3", size_ratio >= 3])  # fmt: skip
    for other in ("fp32", "dynamic"):
        ratio = onnx["static"] / onnx[other]
        goal = ("≥ 1", ratio >= 1) if other == "dynamic" else ("-", None)
        rows.append(["3", f"ONNX photos/s, int8 static QDQ ÷ {other} {label}",
                     f"{onnx['static']:.3g}", f"{onnx[other]:.3g}", ratio, *goal])  # fmt: skip
    rows.append(["3", f"nail masks equal to the pipeline's ({infer['differing']} pixels differ)",
                 f"{infer['agreement']:.7f}", "1", infer["agreement"], "≥ 0.99999",
                 infer["agreement"] >= 0.99999])  # fmt: skip
    return rows + _from_files(cfg["files"], work, onnx["static"])


def _from_files(fc: dict, work: Path, int8_forward: float) -> list[list]:
    """Question 3 from files: whole processes, wall time, fastest of ``rounds`` alternating."""
    import subprocess

    sets = {"small photos": work / "files-small", "12 MP phone photos": work / "files-phone"}
    synthetic = ["-m", "nail_segformer.synthetic", str(sets["small photos"]), "--n",
                 str(fc["small"]), "--seed", "7"]  # fmt: skip
    phone = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from pathlib import"
             f" Path; from phone_photos import write_photos; write_photos(Path("
             f"{str(sets['12 MP phone photos'])!r}), {fc['phone_per_shape']}, {fc['phone_scale']})")  # fmt: skip
    for args in (synthetic, ["-c", phone]):
        subprocess.run([sys.executable, *args], check=True, capture_output=True)
    onnx = ["--model", str(work / "onnx"), "--onnx", str(work / "onnx")]
    variants = {"predict, torch, masks only": ["--model", str(work / "model"), "--overlay_format", "none"],
                "predict, torch, with overlays (default)": ["--model", str(work / "model")],
                "predict, ONNX fp32, masks only": [*onnx, "--overlay_format", "none"],
                "predict, ONNX int8, masks only": [*onnx, "--dtype", "int8", "--overlay_format", "none"],
                "predict, ONNX int8, with overlays": [*onnx, "--dtype", "int8"]}  # fmt: skip
    rows = []
    for set_name, root in sets.items():
        photos = sorted(str(p) for p in (root / "Images").rglob("*.jpg"))
        best = {}
        for _ in range(fc["rounds"]):
            for name, argv in {"pipeline": None, **variants}.items():
                out = work / "files-out" / name.replace(" ", "_").replace(",", "")
                start = time.perf_counter()
                if argv is None:
                    run_child("run", {"job": "pipeline_files", "model_dir": str(work / "model"),
                                      "photos": photos, "out_dir": str(out)})  # fmt: skip
                else:
                    subprocess.run([sys.executable, "-m", "nail_segformer.predict", *argv,
                                    "--input", str(root / "Images"), "--output", str(out),
                                    "--no_progress"], check=True, capture_output=True)  # fmt: skip
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
        rate = {name: len(photos) / seconds for name, seconds in best.items()}
        for name in variants:
            ratio = rate[name] / rate["pipeline"]
            goal = ("≥ 3", ratio >= 3) if name == "predict, ONNX int8, masks only" else ("-", None)
            rows.append(["3", f"photos/s from files, {name} ÷ pipeline script ({set_name}, "
                         f"{len(photos)}, whole processes)", f"{rate[name]:.3g}",
                         f"{rate['pipeline']:.3g}", ratio, *goal])  # fmt: skip
        if set_name == "small photos":
            share = rate["predict, ONNX int8, masks only"] / int8_forward
            rows.append(["3", "predict ONNX int8 masks only (small photos, from files) ÷ the int8 "
                         "forward pass alone (tensors in memory)",
                         f"{rate['predict, ONNX int8, masks only']:.3g}", f"{int8_forward:.3g}",
                         share, "≥ 0.85", share >= 0.85])  # fmt: skip
    return rows


def job_devices(model_dir: str, preset: str, size: int, runs: int, batch: int) -> dict:
    """Forward passes of one model (random weights) in PyTorch, ONNX fp32 and ONNX int8, on
    tensors in memory: the median latency of one photo on one thread (a phone core's proxy), the
    photos/s of batches on two threads (fastest of two rounds), and each file's size."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from nail_segformer.data import ID2LABEL
    from nail_segformer.data.transforms import load_image_processor
    from nail_segformer.export import export_folder
    from nail_segformer.model import build_model

    model = build_model(preset, ID2LABEL, seed=SEED).eval()
    model.save_pretrained(model_dir)
    paths = export_folder(model, load_image_processor(None, size=size), model_dir, (size, size))
    files = {"PyTorch": Path(model_dir) / "model.safetensors", "ONNX fp32": paths["fp32"],
             "ONNX int8": paths["int8"]}  # fmt: skip
    x = np.random.default_rng(SEED).standard_normal((batch, 3, size, size), dtype=np.float32)

    def runner(name: str, threads: int):
        if name == "PyTorch":
            torch.set_num_threads(threads)
            return lambda inputs: model(pixel_values=torch.from_numpy(inputs))
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(
            str(files[name]), options, providers=["CPUExecutionProvider"]
        )
        return lambda inputs: session.run(["logits"], {"pixel_values": inputs})

    def seconds(run, inputs) -> float:
        start = time.perf_counter()
        run(inputs)
        return time.perf_counter() - start

    result = {}
    with torch.inference_mode():
        for name, file in files.items():
            one = runner(name, 1)
            one(x[:1])  # first-call allocations
            latency = statistics.median(seconds(one, x[:1]) for _ in range(runs))
            two = runner(name, 2)
            two(x)
            rate = batch / min(seconds(two, x) for _ in range(2))
            result[name] = {"mib": file.stat().st_size / 2**20, "latency_ms": 1000 * latency,
                            "photos_s": rate}  # fmt: skip
    return result


def _rate(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def devices_table(dc: dict, work: Path) -> str:
    """Which model for which device: one row per model, input size and runtime."""
    rows = []
    for preset in dc["presets"]:
        for size in dc["sizes"]:
            found = run_child("run", {"job": "devices", "model_dir": str(work / f"dev-{preset}-{size}"),
                                      "preset": preset, "size": size, "runs": dc["runs"],
                                      "batch": dc["batch"]})  # fmt: skip
            for name, figures in found.items():
                rows.append([preset, size, name, f"{figures['mib']:.1f}",
                             f"{figures['latency_ms']:.0f}", _rate(figures["photos_s"])])  # fmt: skip
    return format_table(["model", "px", "runtime", "file MiB", "latency ms, 1 thread",
                         f"photos/s, 2 threads, batch {dc['batch']}"], rows)  # fmt: skip


def job_pipeline_files(model_dir: str, photos: list[str], out_dir: str) -> dict:
    """``pipeline("image-segmentation")`` on each photo file, as a user calls it (batch 1), its
    nail mask saved as PNG (what ``predict --overlay_format none`` writes)."""
    from transformers import pipeline

    segmenter = pipeline("image-segmentation", model=model_dir, device="cpu")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for index, photo in enumerate(photos):
        for segment in segmenter(photo):
            if segment["label"] == "nail":
                segment["mask"].save(Path(out_dir) / f"{index:05d}.png")
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script")
    parser.add_argument("--workdir", help="keep data and models here instead of a temp folder")
    args = parser.parse_args(argv)
    cfg = CONFIGS["smoke" if args.smoke else "full"]
    info, started = machine_info(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nail-bench-") as tmp:
        work = Path(args.workdir or tmp)
        rows = measure(cfg, work, make_photos(work / f"photos-{cfg['photos']}", cfg["photos"]))
        devices = devices_table(cfg["devices"], work)
    marks = {True: "yes", False: "**NO**", None: "-"}
    print(format_table(["#", "figure", "ours", "baseline", "ratio", "goal", "met?"],
                       [[*row[:4], f"{row[4]:.3g}", row[5], marks[row[6]]] for row in rows]))  # fmt: skip
    print(f"\nWhich model for which device (forward passes on tensors in memory):\n\n{devices}")
    print(f"\n`{info['command']}`, {time.perf_counter() - started:.0f} s; {info['summary']}")
    return 0


if __name__ == "__main__":
    jobs = {"train": job_train, "eval": job_eval, "infer": job_infer, "onnx": job_onnx,
            "pipeline_files": job_pipeline_files, "devices": job_devices}  # fmt: skip
    if not child_main(jobs):
        sys.exit(main())
