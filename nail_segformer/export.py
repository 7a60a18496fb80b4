"""Export a trained model to ONNX and check the export against PyTorch.

Command line::

    python -m nail_segformer.export --model outputs/nail-segformer --output model.onnx

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
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = ["DEFAULT_OPSET", "export_onnx", "compare_with_torch", "check_export", "main"]

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
DEFAULT_ATOL = 1e-3


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
    return output


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
        f"photo {image.width}x{image.height}": processor(images=[image], return_tensors="np")[
            "pixel_values"
        ],
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
        usage="python -m nail_segformer.export --model RUN --output FILE.onnx [--flag value ...]",
        description="Export a trained model to ONNX (dynamic batch/height/width) and check it "
        "against PyTorch with onnxruntime.",
    )
    parser.add_argument("--model", required=True, help="training output folder, or a Hub id")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 17)")
    parser.add_argument("--image", default=None, help="photo for the check; default synthetic")
    parser.add_argument("--atol", type=float, default=DEFAULT_ATOL, help="largest logit diff")
    parser.add_argument("--revision", default=None, help="branch, tag or commit of a Hub model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from nail_segformer.data import ImageReadError, load_image
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
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as err:
        print(f"error: {err}; pip install 'nail_segformer[export]'", file=sys.stderr)
        return 2
    try:
        image = load_image(args.image) if args.image else None  # first: it is quick
        processor = load_run_processor(args.model, args.revision)
        model = load_run_model(args.model, args.revision).eval()
        path = export_onnx(model, args.output, processor_size(processor), args.opset)
    except (ModelLoadError, HubUnavailableError, ImageReadError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    diffs = check_export(model, path, processor, image)
    print(f"wrote {path} (opset {args.opset}, dynamic batch/height/width)")
    for name, diff in diffs.items():
        print(f"max |logits difference| onnxruntime vs torch, {name}: {diff:.2e}")
    worst = max(diffs.values())
    if worst > args.atol:
        print(
            f"error: the export differs from PyTorch by {worst:.2e} > --atol {args.atol}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
