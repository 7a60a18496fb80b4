"""Export a trained model to ONNX, fp32 and int8, in the layout the Hub's ONNX runtimes read.

Command line::

    python -m nail_segformer.export --model outputs/nails                # outputs/nails/onnx/
    python -m nail_segformer.export --model you/nails --output nails-onnx  # another folder
    python -m nail_segformer.export --model outputs/nails --output model.onnx  # one fp32 file

A folder export writes ``onnx/model.onnx`` (fp32) and ``onnx/model_quantized.onnx`` (int8) with
``config.json`` and ``preprocessor_config.json`` beside ``onnx/``: the layout transformers.js
(``dtype: "fp32"`` and ``"q8"``) and onnxruntime users load. A re-export replaces ``onnx/``
whole: it is written beside and renamed into place.

The int8 file is onnxruntime's static QDQ quantization, per channel, calibrated on photos run
through the run's image processor (``--data_root``'s training photos, ``--images``, or the
package's synthetic hand photos): measured on MiT-b0 at 512 px (``benchmarks/run.py``), its
file is 3.3x smaller than fp32's and its forward pass 2.4x faster than dynamic quantization's,
whose file is as small; on a 2-core Xeon it ran at 0.91x fp32's speed.

The graph takes ``pixel_values`` (N, 3, H, W float32, normalised by the run's image processor)
and returns ``logits`` (N, C, ceil(H/4), ceil(W/4)); batch size, height and width are dynamic.
Inference with it: ``python -m nail_segformer.predict --onnx model.onnx --model DIR ...`` (the
processor still comes from the run folder).

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)``. The default dynamo
exporter of torch >= 2.9 needs the ``onnxscript`` package, which is not a dependency here; the
TorchScript one needs nothing more than ``onnx`` and handles SegFormer's dynamic sizes.

After writing, the export is run with onnxruntime and compared with PyTorch on random inputs of
two sizes (the processor size, batch 2, and a non-square size) and on one photo (``--image``, or a
synthetic hand photo); the largest absolute difference of the logits is printed, and the check
fails above ``--atol``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from nail_segformer.predict.infer import ONNX_FILES

__all__ = [
    "DEFAULT_OPSET",
    "ONNX_FILES",
    "export_onnx",
    "export_folder",
    "quantize_int8",
    "compare_with_torch",
    "check_export",
    "main",
]

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
DEFAULT_ATOL = 1e-3
# Calibration photos for the int8 activations' ranges.
CALIBRATION_PHOTOS = 16
# The int8 file is kept when, on photos with masks, its nail IoU is within GATE_IOU_DROP of
# fp32's and its nail masks overlap fp32's with an IoU of at least GATE_MASK_IOU.
GATE_IOU_DROP, GATE_MASK_IOU = 0.01, 0.95
_CARD_START, _CARD_END = "<!-- onnx -->", "<!-- /onnx -->"
# What `--push_to_hub` publishes of the folder.
PUSHED_FILES = ("onnx/*.onnx", "README.md")


class _LogitsOnly(torch.nn.Module):
    """Wraps the model so the graph has one named input and one output tensor."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def export_onnx(
    model: torch.nn.Module,
    output: str | os.PathLike,
    sample_size: tuple[int, int],
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write ``model`` as ONNX with dynamic batch, height and width.

    The ``nail_threshold`` of the model's config, when it has one, goes into the file's
    ``metadata_props``, where :class:`~nail_segformer.predict.Predictor` reads it.

    Args:
        model: a ``SegformerForSemanticSegmentation`` (on CPU).
        output: the ``.onnx`` file to write; its folder is created.
        sample_size: ``(height, width)`` of the example input traced through the model.
        opset: ONNX opset, at least 17 (needed for ``LayerNormalization``).

    Returns:
        The written path.

    Raises:
        ValueError: ``opset`` below 17.
    """
    if opset < DEFAULT_OPSET:
        raise ValueError(f"--opset must be >= {DEFAULT_OPSET}, got {opset}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    # eval() on the wrapper, not only the model: the exporter restores the wrapper's training
    # flag recursively afterwards, which would leave dropout and friends switched on.
    wrapper = _LogitsOnly(model).eval()
    example = torch.zeros(1, 3, *sample_size)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo (see the module docstring),
        # and tracing warns that `q_length > 1` in the SDPA attention becomes a constant: the
        # expression is `... and is_causal`, always False for SegFormer, so that is harmless.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            wrapper,
            (example,),
            str(output),
            dynamo=False,
            input_names=["pixel_values"],
            output_names=["logits"],
            dynamic_axes={
                "pixel_values": {0: "batch", 2: "height", 3: "width"},
                "logits": {0: "batch", 2: "logits_height", 3: "logits_width"},
            },
            opset_version=opset,
        )
    import onnx

    onnx.checker.check_model(str(output))
    threshold = getattr(model.config, "nail_threshold", None)
    if threshold is not None:  # a lone .onnx file keeps the run's threshold too
        proto = onnx.load(str(output))
        onnx.helper.set_model_props(proto, {"nail_threshold": str(threshold)})
        onnx.save(proto, str(output))
    return output


def calibration_inputs(processor, images: list | None = None, seed: int = 0) -> list[np.ndarray]:
    """``pixel_values`` (1, 3, H, W) of each photo as the run's processor prepares it.

    Args:
        processor: the run's image processor.
        images: RGB PIL photos; None renders :data:`CALIBRATION_PHOTOS` synthetic hand photos.
        seed: seed of the synthetic photos.
    """
    if images is None:
        from nail_segformer.synthetic import CATEGORIES, render_sample

        images = [
            render_sample(seed, i, CATEGORIES[i % len(CATEGORIES)], size=(480, 360)).image
            for i in range(CALIBRATION_PHOTOS)
        ]
    return [_pixel_values(processor, im) for im in images]


def _pixel_values(processor, image) -> np.ndarray:
    # Said, not guessed: transformers takes a photo 1 or 3 pixels tall for channels-first.
    return processor(images=[image], input_data_format="channels_last", return_tensors="np")[
        "pixel_values"
    ]


def quantize_int8(fp32_path: str | os.PathLike, output: str | os.PathLike, inputs: list) -> Path:
    """Write the int8 (static QDQ, per-channel) version of an fp32 export.

    Args:
        fp32_path: the fp32 ``.onnx`` file.
        output: the int8 ``.onnx`` file to write.
        inputs: calibration ``pixel_values`` arrays (see :func:`calibration_inputs`).
    """
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter({"pixel_values": x.astype(np.float32)} for x in inputs)

        def get_next(self):
            return next(self.feeds, None)

    output = Path(output)
    root = logging.getLogger()
    level = root.level
    # The quantizer warns on the root logger for every norm weight it cannot quantize per
    # channel (rank 1); it quantizes those per tensor, as it should.
    root.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            # Shape inference and graph folding first, as onnxruntime's quantizer advises.
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(output),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
    finally:
        root.setLevel(level)
    return output


def _mask_agreement(fp32_path: Path, int8_path: Path, inputs: list) -> float:
    """Nail IoU of the int8 file's argmax masks against fp32's, at the model's output size."""
    import onnxruntime as ort

    from nail_segformer.labels import NAIL

    sessions = [
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for path in (fp32_path, int8_path)
    ]
    both = either = 0
    for x in inputs:
        fp32, int8 = (s.run(["logits"], {"pixel_values": x})[0].argmax(1) == NAIL for s in sessions)
        both += int((fp32 & int8).sum())
        either += int((fp32 | int8).sum())
    return both / either if either else 1.0


def export_folder(
    model: torch.nn.Module,
    processor,
    folder: str | os.PathLike,
    sample_size: tuple[int, int],
    calibration: list | None = None,
    opset: int = DEFAULT_OPSET,
    int8: bool = True,
) -> dict:
    """Write ``folder/onnx/`` (fp32, and int8 unless ``int8`` is False), replacing it whole.

    ``config.json`` and ``preprocessor_config.json`` are written beside ``onnx/`` when the
    folder lacks them (a run's own folder has them).

    Args:
        model: a ``SegformerForSemanticSegmentation`` (on CPU).
        processor: its image processor.
        folder: the model folder.
        sample_size: ``(height, width)`` traced through the model.
        calibration: calibration ``pixel_values`` for int8 (see :func:`calibration_inputs`).
        opset: ONNX opset, at least 17.
        int8: also write the int8 file.

    Returns:
        ``{"fp32": path, "int8": path or None, "int8_nail_iou": agreement with fp32 or None}``,
        with the paths as they are after the swap into ``folder/onnx``.
    """
    import tempfile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".onnx-new-"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would stay on the published onnx/
    target, old = folder / "onnx", None
    try:
        fp32 = export_onnx(model, staging / ONNX_FILES["fp32"], sample_size, opset)
        agreement = None
        if int8:
            inputs = calibration if calibration is not None else calibration_inputs(processor)
            quantized = quantize_int8(fp32, staging / ONNX_FILES["int8"], inputs)
            agreement = _mask_agreement(fp32, quantized, inputs)
        if not (folder / "config.json").is_file():
            model.config.save_pretrained(folder)
        if not (folder / "preprocessor_config.json").is_file():
            processor.save_pretrained(folder)
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=folder, prefix=".onnx-old-"))
            target.rename(old / "onnx")
        staging.rename(target)
    except BaseException:
        if old is not None and not target.exists():
            (old / "onnx").rename(target)  # the previous export stays whole
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return {
        "fp32": target / ONNX_FILES["fp32"],
        "int8": target / ONNX_FILES["int8"] if int8 else None,
        "int8_nail_iou": agreement,
    }


def run_pairs(
    model_folder: str | os.PathLike, data_root: str | os.PathLike, split: str
) -> list[tuple[str, str]]:
    """``(photo, mask)`` paths of one split of the run (its ``split_manifest.csv``).

    Raises:
        ValueError: the folder has no manifest, or it lists no pair of ``split``.
        DataError: the manifest does not match ``data_root``.
    """
    from nail_segformer.data import read_manifest
    from nail_segformer.data.files import local_path

    manifest = Path(model_folder) / "split_manifest.csv"
    if not manifest.is_file():
        raise ValueError(
            f"{model_folder} has no split_manifest.csv: --data_root scores a training run's "
            "validation split, so pass a run's output folder as --model"
        )
    pairs = [
        (local_path(p.image), local_path(p.mask))
        for p in read_manifest(manifest, data_root)
        if p.split == split
    ]
    if not pairs:
        raise ValueError(f"{manifest} lists no {split} pair for the export")
    return pairs


def folder_pairs(images: str | os.PathLike, masks: str | os.PathLike) -> list[tuple]:
    """``(photo, mask)`` paths of the photos under ``images`` that have a mask under ``masks``
    (``Masks/<category>/<stem>.*``, as ``predict --masks`` finds them); others are named."""
    from nail_segformer.predict.evaluation import MaskLookup
    from nail_segformer.predict.outputs import expand_inputs

    lookup = MaskLookup(masks)
    items, _ = expand_inputs([str(images)], skip=[masks])
    pairs = []
    for item in items:
        try:
            pairs.append((item.path, lookup.find(item.category, item.path.stem)))
        except LookupError as err:
            print(f"quality gate: passing over {item.path}: {err}", file=sys.stderr)
    if not pairs:
        raise ValueError(f"no photo under {images} has a mask under {masks}")
    return pairs


def quality_gate(folder: str | os.PathLike, pairs: list) -> dict:
    """Score both files of ``folder/onnx`` on photos with masks; say whether int8 may stay.

    Args:
        folder: an export folder (``onnx/model.onnx`` and ``onnx/model_quantized.onnx``).
        pairs: ``(photo path, mask path)``; a pair that cannot be read is passed over.

    Returns:
        ``photos`` scored, ``fp32_iou_nail`` and ``int8_iou_nail`` (against the masks),
        ``int8_mask_iou`` (int8's nail masks against fp32's) and ``passed``.
    """
    from nail_segformer.data import ImageReadError, load_image
    from nail_segformer.predict import Predictor
    from nail_segformer.predict.evaluation import Evaluation

    folder = Path(folder)
    runs = {
        dtype: (
            Predictor.from_pretrained(folder, onnx=folder / "onnx" / name, device="cpu"),
            Evaluation(),
        )
        for dtype, name in ONNX_FILES.items()
    }
    both = either = 0
    for photo, mask in pairs:
        try:
            image = load_image(photo)
            masks = {}
            for dtype, (predictor, evaluation) in runs.items():
                [prediction] = predictor.predict([image])
                evaluation.add(str(photo), prediction.mask, mask)
                masks[dtype] = prediction.mask.astype(bool)
        except (ImageReadError, ValueError) as err:
            print(f"quality gate: passing over {photo}: {err}", file=sys.stderr)
            continue
        both += int((masks["fp32"] & masks["int8"]).sum())
        either += int((masks["fp32"] | masks["int8"]).sum())
    result = {
        "photos": len(runs["fp32"][1].per_image),
        **{f"{dtype}_iou_nail": run[1].metrics()["iou_nail"] for dtype, run in runs.items()},
        "int8_mask_iou": both / either if either else 1.0,
    }
    result["passed"] = bool(
        result["photos"]
        and result["int8_iou_nail"] >= result["fp32_iou_nail"] - GATE_IOU_DROP
        and result["int8_mask_iou"] >= GATE_MASK_IOU
    )
    return result


def card_section(files: list[str], gate: dict | None) -> str:
    """The model card's ONNX section: the files, the gate's figures, how to run them."""
    lines = [_CARD_START, "## ONNX", "", "Exported with `python -m nail_segformer.export`:", ""]
    lines += [f"- `onnx/{name}`" for name in files]
    if gate is None:
        lines += ["", "The int8 file was not scored on photos with masks."]
    else:
        lines += [
            "",
            f"On {gate['photos']} photos with masks: nail IoU {gate['fp32_iou_nail']:.4f} "
            f"(fp32), {gate['int8_iou_nail']:.4f} (int8); int8's nail masks overlap fp32's "
            f"with an IoU of {gate['int8_mask_iou']:.4f}.",
        ]
    lines += [
        "",
        "transformers.js (browser or Node), which decides by argmax:",
        "",
        "```js",
        "import { pipeline } from '@huggingface/transformers';",
        "const segment = await pipeline('image-segmentation', '<this repo>', { dtype: 'q8' });",
        "const nail = (await segment('hand.jpg')).find((s) => s.label === 'nail');",
        "```",
        "",
        "onnxruntime in Python (`pixel_values` from this repo's image processor):",
        "",
        "```python",
        "import onnxruntime",
        "session = onnxruntime.InferenceSession('onnx/model.onnx')",
        "logits = session.run(['logits'], {'pixel_values': pixel_values})[0]",
        "```",
        _CARD_END,
    ]
    return "\n".join(lines)


def write_card_section(folder: str | os.PathLike, section: str) -> Path:
    """Put ``section`` into ``folder/README.md``, replacing an earlier export's section."""
    path = Path(folder) / "README.md"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if _CARD_START in text and _CARD_END in text:
        before, rest = text.split(_CARD_START, 1)
        text = before.rstrip("\n") + "\n\n" + section + rest.split(_CARD_END, 1)[1]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def compare_with_torch(model: torch.nn.Module, session, pixel_values: np.ndarray) -> float:
    """Largest absolute difference between PyTorch's and onnxruntime's logits for one input."""
    model.eval()
    with torch.inference_mode():
        expected = model(pixel_values=torch.from_numpy(pixel_values)).logits.numpy()
    actual = session.run(["logits"], {"pixel_values": pixel_values})[0]
    if actual.shape != expected.shape:
        raise ValueError(f"ONNX logits have shape {actual.shape}, PyTorch's {expected.shape}")
    return float(np.abs(actual - expected).max())


def check_export(
    model: torch.nn.Module, onnx_path: str | os.PathLike, processor, image=None, seed: int = 0
) -> dict[str, float]:
    """Compare the export with PyTorch on random inputs of two sizes and on one photo.

    Args:
        model: the exported model.
        onnx_path: the ``.onnx`` file.
        processor: the run's image processor (size for the random inputs, photo preprocessing).
        image: an RGB PIL photo; None renders a synthetic hand photo.
        seed: seed of the random inputs.

    Returns:
        Largest absolute logit difference per check, keyed by a description of the input.
    """
    import onnxruntime as ort

    from nail_segformer.data.transforms import processor_size

    if image is None:
        from nail_segformer.synthetic import render_sample

        image = render_sample(seed, 0, "2", size=(320, 240)).image
    height, width = processor_size(processor)
    rng = np.random.default_rng(seed)
    inputs = {
        f"random 2x3x{height}x{width}": rng.standard_normal((2, 3, height, width)),
        f"random 1x3x{height + 32}x{width // 2 + 8}": rng.standard_normal(
            (1, 3, height + 32, width // 2 + 8)
        ),
        f"photo {image.width}x{image.height}": _pixel_values(processor, image),
    }
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return {
        name: compare_with_torch(model, session, np.ascontiguousarray(x, dtype=np.float32))
        for name, x in inputs.items()
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m nail_segformer.export``.

    Returns:
        0 when the export matches PyTorch within ``--atol``, 1 when it does not, 2 on a usage
        or model error.
    """
    parser = argparse.ArgumentParser(
        prog="python -m nail_segformer.export",
        usage="python -m nail_segformer.export --model RUN [--output FOLDER|FILE.onnx] [--flag value ...]",
        description="Export a trained model to ONNX (dynamic batch/height/width), fp32 and int8, "
        "and check it against PyTorch with onnxruntime.",
    )
    parser.add_argument("--model", required=True, help="training output folder, or a Hub id")
    parser.add_argument(
        "--output",
        default=None,
        help="folder to write config, processor and onnx/ to (default: the --model folder); "
        "a path ending in .onnx writes one fp32 file instead",
    )
    parser.add_argument(
        "--images",
        default=None,
        help="folder of photos to calibrate int8 on; default: the run's training photos with "
        "--data_root, else the package's synthetic photos",
    )
    parser.add_argument("--no_int8", action="store_true", help="write the fp32 file only")
    parser.add_argument(
        "--data_root",
        default=None,
        help="the run's data folder: score fp32 and int8 on its validation split and keep int8 "
        f"only within {GATE_IOU_DROP} nail IoU of fp32",
    )
    parser.add_argument(
        "--masks", default=None, help="with --images: their masks, to score fp32 and int8 on"
    )
    parser.add_argument("--push_to_hub", action="store_true", help="publish onnx/ and the card")
    parser.add_argument("--hub_model_id", default=None, help="the model repo to publish to")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 17)")
    parser.add_argument("--image", default=None, help="photo for the check; default synthetic")
    parser.add_argument("--atol", type=float, default=DEFAULT_ATOL, help="largest logit diff")
    parser.add_argument("--revision", default=None, help="branch, tag or commit of a Hub model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from nail_segformer.data import DataError, ImageReadError, load_image
    from nail_segformer.data.transforms import processor_size
    from nail_segformer.model import HubUnavailableError, check_model_reference
    from nail_segformer.predict import ModelLoadError, load_run_model, load_run_processor

    # Checked before anything is loaded; argparse's usage error, exit code 2.
    if args.opset < DEFAULT_OPSET:
        parser.error(
            f"--opset must be >= {DEFAULT_OPSET} (for LayerNormalization), got {args.opset}"
        )
    if args.atol < 0:
        parser.error(f"--atol must be >= 0, got {args.atol}")
    try:
        check_model_reference(args.model, "--model", "pass a training run's output folder")
    except ValueError as err:
        parser.error(str(err))
    single_file = args.output is not None and args.output.endswith(".onnx")
    folder = args.output or args.model
    if args.output is None and not Path(args.model).is_dir():
        parser.error(f"--model {args.model} is a Hub id: pass --output FOLDER to write the export")
    if args.images is not None and not Path(args.images).is_dir():
        parser.error(f"--images {args.images} is not a folder of photos")
    if args.masks is not None and (args.images is None or args.data_root is not None):
        parser.error("--masks scores the --images photos: pass --images too, and not --data_root")
    if args.masks is not None and not Path(args.masks).is_dir():
        parser.error(f"--masks {args.masks} is not a folder")
    if args.data_root is not None and not Path(args.model).is_dir():
        parser.error(
            "--data_root scores a training run's validation split: --model must be its folder"
        )
    if args.push_to_hub and (single_file or not args.hub_model_id):
        parser.error(
            "--push_to_hub needs --hub_model_id and a folder export (not --output FILE.onnx)"
        )
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as err:
        print(f"error: {err}; pip install 'nail_segformer[export]'", file=sys.stderr)
        return 2
    try:
        image = load_image(args.image) if args.image else None  # first: it is quick
        pairs = None
        if args.data_root:
            pairs = run_pairs(args.model, args.data_root, "validation")
        elif args.masks:
            pairs = folder_pairs(args.images, args.masks)
        if args.images:
            calibration = _calibration_photos([args.images])
        elif args.data_root:  # the run's training photos
            train = run_pairs(args.model, args.data_root, "train")
            calibration = _calibration_photos([photo for photo, _ in train])
        else:
            calibration = None
        processor = load_run_processor(args.model, args.revision)
        model = load_run_model(args.model, args.revision).eval()
        size = processor_size(processor)
        if single_file:
            paths = {"fp32": export_onnx(model, args.output, size, args.opset)}
        else:
            if calibration is None and not args.no_int8:
                print("calibrating int8 on the package's synthetic hand photos (--images DIR "
                      "to use yours)")  # fmt: skip
            inputs = None if calibration is None else calibration_inputs(processor, calibration)
            paths = export_folder(
                model, processor, folder, size, inputs, args.opset, int8=not args.no_int8
            )
    except (ModelLoadError, HubUnavailableError, ImageReadError, ValueError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    diffs = check_export(model, paths["fp32"], processor, image)
    print(f"wrote {paths['fp32']} (fp32, opset {args.opset}, dynamic batch/height/width)")
    if paths.get("int8") is not None:
        size_ratio = os.path.getsize(paths["fp32"]) / os.path.getsize(paths["int8"])
        print(
            f"wrote {paths['int8']} (int8, {size_ratio:.1f}x smaller; nail-mask IoU against fp32 "
            f"on the calibration photos: {paths['int8_nail_iou']:.4f})"
        )
    for name, diff in diffs.items():
        print(f"max |logits difference| onnxruntime vs torch, {name}: {diff:.2e}")
    worst = max(diffs.values())
    if worst > args.atol:
        print(
            f"error: the export differs from PyTorch by {worst:.2e} > --atol {args.atol}",
            file=sys.stderr,
        )
        return 1
    if single_file:
        return 0
    gate = None
    if paths.get("int8") is not None and pairs is not None:
        gate = quality_gate(folder, pairs)
        print(
            f"quality gate on {gate['photos']} photos with masks: nail IoU fp32 "
            f"{gate['fp32_iou_nail']:.4f}, int8 {gate['int8_iou_nail']:.4f}; int8 masks against "
            f"fp32's: IoU {gate['int8_mask_iou']:.4f}"
        )
        if not gate["passed"]:
            paths["int8"].unlink()
            paths["int8"] = None
            print(
                f"int8 left out: it must stay within {GATE_IOU_DROP} nail IoU of fp32 and overlap "
                f"fp32's masks with an IoU of at least {GATE_MASK_IOU}; onnx/ holds fp32 only"
            )
    elif paths.get("int8") is not None:
        print(
            "the int8 file was not scored on photos with masks: pass --data_root DATA, or "
            "--images DIR --masks DIR"
        )
    card = Path(folder) / "README.md"
    has_card = card.is_file()
    if not has_card and Path(args.model, "README.md").is_file():
        shutil.copy(Path(args.model, "README.md"), card)  # the run's card, for the push
        has_card = True
    files = [p.name for p in (paths["fp32"], paths.get("int8")) if p is not None]
    write_card_section(folder, card_section(files, gate))
    if args.push_to_hub:
        return _push(folder, args.hub_model_id, has_card)
    return 0


def _push(folder: str, repo_id: str, with_card: bool) -> int:
    from nail_segformer.hub import PushError, push_folder, push_later_hint

    # A card written here without the training run's would replace the repo's card.
    patterns = list(PUSHED_FILES) if with_card else [p for p in PUSHED_FILES if p != "README.md"]
    try:
        pushed = push_folder(folder, repo_id, patterns, commit_message="Add the ONNX export")
    except PushError as err:
        hint = push_later_hint(repo_id, folder, patterns)
        print(f"error: {err}\nthe export is in {folder}; publish it later with: {hint}",
              file=sys.stderr)  # fmt: skip
        return 3
    print(f"published {', '.join(patterns)} to https://huggingface.co/{pushed}")
    return 0


def _calibration_photos(sources: list[str]) -> list:
    """Up to :data:`CALIBRATION_PHOTOS` photos read from ``sources`` (files, or one folder);
    unreadable files are named and passed over."""
    from nail_segformer.data import ImageReadError, load_image

    if len(sources) == 1 and Path(sources[0]).is_dir():
        sources = sorted(p for p in Path(sources[0]).rglob("*") if p.is_file())
    photos = []
    for path in sources:
        try:
            photos.append(load_image(path))
        except ImageReadError as err:
            print(f"calibration: passing over {err}", file=sys.stderr)
        if len(photos) == CALIBRATION_PHOTOS:
            break
    if not photos:
        raise ValueError("no readable photo to calibrate int8 on (--images or --data_root)")
    return photos


if __name__ == "__main__":
    sys.exit(main())
