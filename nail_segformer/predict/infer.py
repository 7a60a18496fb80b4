"""Inference internals of :mod:`nail_segformer.predict`: loading, model runners, the two modes.

A *runner* maps ``pixel_values`` (N, 3, H, W float32, normalised as the image processor does) to
``logits`` (N, C, H/4, W/4) as a float32 numpy array; :class:`TorchRunner` and
:class:`OnnxRunner` do the same job with PyTorch or onnxruntime, so the rest of the pipeline
does not know which one it drives. Everything around the runner is numpy and PIL
(:mod:`.pixels`): with :class:`OnnxRunner` and a local model folder, predicting imports neither
torch nor transformers.

Both modes give, per photo, :class:`Scores`: the model's output kept at the size the model saw,
read at the photo's size one band of rows at a time, so that no full-size float map is ever
allocated (a 200 MP photo would need 800 MB per class and channel):

- :func:`resize_scores` resizes the whole photo to the processor size (``SegformerImageProcessor``)
  and reads the logits upsampled bilinearly to the photo's size, like
  ``post_process_semantic_segmentation``. For a two-class model the nail logit's margin over
  background is upsampled instead (interpolation is linear, so it is the margin of the
  upsampled logits): the same decision as the Hugging Face pipeline's argmax, up to rounding
  at exact ties. Probabilities are then computed only where the mask needs them.
- :func:`slide_scores` scales the photo so that its short side is ``scale`` pixels and runs
  overlapping ``window``-sized crops of it; each crop's logits are upsampled to the crop, turned
  into probabilities and averaged over every crop covering a pixel, and the averaged map is
  read upsampled to the photo's size.

With ``tta`` each input is also run mirrored left-right (in the same model call) and the
probabilities of the two, the mirrored one flipped back, are averaged.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from nail_segformer.labels import BACKGROUND, NAIL
from nail_segformer.predict.pixels import (
    PROCESSOR_FILE,
    PixelSettings,
    lerp_axis,
    linear_taps,
    resize_bilinear,
)

__all__ = [
    "DEVICE_CHOICES",
    "ONNX_FILES",
    "onnx_file",
    "ModelLoadError",
    "load_run_model",
    "load_run_processor",
    "load_pixel_settings",
    "TorchRunner",
    "OnnxRunner",
    "Scores",
    "resolve_device",
    "resize_inputs",
    "resize_scores",
    "scaled_size",
    "slide_scores",
]

logger = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda")
# A model folder's onnx/ files by dtype: the names transformers.js reads for fp32 and q8.
ONNX_FILES = {"fp32": "model.onnx", "int8": "model_quantized.onnx"}


def onnx_file(path: str | os.PathLike | None, dtype: str | None = None) -> Path | None:
    """The ``.onnx`` file ``--onnx PATH [--dtype D]`` names; None without ``--onnx``.

    Args:
        path: an ``.onnx`` file, or a folder holding ``onnx/`` (a model folder) or the files.
        dtype: ``fp32`` (default) or ``int8``, for a folder only.

    Raises:
        ValueError: the file is missing, or ``dtype`` is given with a file or without a path;
            the message says what to pass.
    """
    if path is None:
        if dtype is not None:
            raise ValueError("--dtype picks the file of an ONNX export: pass --onnx FOLDER too")
        return None
    path = Path(path).expanduser()
    if path.is_file():
        if dtype is not None:
            raise ValueError(f"--dtype picks a file in an export folder; --onnx {path} is a file")
        return path
    if not path.is_dir():
        raise ValueError(
            f"--onnx {path} is neither a file nor a folder: pass the model folder that "
            "python -m nail_segformer.export wrote onnx/ into, or an .onnx file"
        )
    name = ONNX_FILES[dtype or "fp32"]
    for candidate in (path / "onnx" / name, path / name):
        if candidate.is_file():
            return candidate
    raise ValueError(
        f"--onnx {path} has no onnx/{name} ({dtype or 'fp32'}): run python -m "
        f"nail_segformer.export --model {path}"
    )


class ModelLoadError(ValueError):
    """The model or its image processor cannot be loaded; the message says what to do."""


def _check_processor_folder(model: str) -> None:
    _check_files(model)
    if os.path.isdir(model) and not os.path.isfile(os.path.join(model, PROCESSOR_FILE)):
        raise ModelLoadError(
            f"model folder {model} has no preprocessor_config.json, so the photo size and "
            "normalisation the model was trained with are unknown. Pass the training run's "
            "output folder (run_finetune.py saves preprocessor_config.json beside its model), "
            "or copy preprocessor_config.json from it into this folder."
        )


def _check_files(model: str) -> None:
    from nail_segformer.model import CheckpointError, check_checkpoint_files

    try:
        check_checkpoint_files(model)
    except CheckpointError as err:
        raise ModelLoadError(str(err)) from None


def load_run_processor(model: str, revision: str | None = None):
    """The image processor saved with a run (or a Hub model), PIL backend, no label reduction.

    Raises:
        ModelLoadError: a local folder without ``preprocessor_config.json``, or unreadable.
        HubUnavailableError: a Hub id while offline and not cached.
    """
    from nail_segformer.data.transforms import load_image_processor
    from nail_segformer.model import hub_loading_kwargs

    _check_processor_folder(model)
    kwargs = hub_loading_kwargs(model, "image processor", revision=revision)
    try:
        return load_image_processor(model, revision=revision, **kwargs)
    except OSError as err:
        raise ModelLoadError(f"cannot load the image processor of {model}: {err}") from err


def load_pixel_settings(model: str, revision: str | None = None) -> PixelSettings:
    """What the run's image processor does to a photo, read without transformers when the
    model is a local folder whose processor file has a form Segformer processors save.

    Raises:
        ModelLoadError: as :func:`load_run_processor`, which reads the other files, or settings
            predict cannot apply.
        HubUnavailableError: a Hub id while offline and not cached.
    """
    _check_processor_folder(model)
    if os.path.isdir(model):
        settings = PixelSettings.from_file(os.path.join(model, PROCESSOR_FILE))
        if settings is not None:
            return settings
    processor = load_run_processor(model, revision)
    try:
        return PixelSettings.from_processor(processor)
    except ValueError as err:
        raise ModelLoadError(f"the image processor of {model} ({PROCESSOR_FILE}): {err}") from err


def load_run_model(model: str, revision: str | None = None):
    """The ``SegformerForSemanticSegmentation`` of a run, from safetensors only, no remote code.

    Raises:
        ModelLoadError: no config or safetensors weights at ``model``.
        HubUnavailableError: a Hub id while offline and not cached.
    """
    from transformers import SegformerForSemanticSegmentation

    from nail_segformer.model import hub_loading_kwargs

    _check_files(model)
    kwargs = hub_loading_kwargs(model, "model", revision=revision)
    try:
        return SegformerForSemanticSegmentation.from_pretrained(
            model, revision=revision, use_safetensors=True, trust_remote_code=False, **kwargs
        )
    except RuntimeError as err:  # weights of another shape than config.json says
        raise ModelLoadError(
            f"cannot load the model {model}: its weights do not fit its config.json "
            f"({' '.join(str(err).split())[:300]})"
        ) from err
    except OSError as err:
        raise ModelLoadError(
            f"cannot load the model {model}: {err}. --model must be a training output folder "
            "(config.json + model.safetensors + preprocessor_config.json) or a Hub id"
        ) from err


def saved_threshold(model: str, revision: str | None = None, runner=None) -> float | None:
    """The ``nail_threshold`` a run chose on validation: the ONNX file's metadata, else the
    ``config.json`` of ``model``; None (argmax) when neither has one.

    Raises:
        ModelLoadError: the saved value is not a number in [0, 1).
    """
    metadata = getattr(runner, "metadata", {})
    if "nail_threshold" in metadata:
        value, where = metadata["nail_threshold"], f"the metadata of {runner.path}"
    elif isinstance(runner, TorchRunner):
        value, where = getattr(runner.model.config, "nail_threshold", None), f"{model}/config.json"
    else:
        value, where = _saved_config(model, revision).get("nail_threshold"), f"{model}/config.json"
    if value is None:
        return None
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        threshold = float("nan")
    if not 0.0 <= threshold < 1.0:
        raise ModelLoadError(
            f"nail_threshold in {where} is {value!r}, not a number in [0, 1); fix it, or pass "
            "--threshold (a number, or argmax)"
        )
    return threshold


def _saved_config(model: str, revision: str | None) -> dict:
    """``config.json`` of a model folder or Hub id; empty when there is none (an ONNX folder
    may have none: argmax then, as transformers.js does)."""
    local = os.path.join(model, "config.json")
    if os.path.isdir(model):
        try:
            with open(local, encoding="utf-8") as file:
                config = json.load(file)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"cannot read {local}: {err}") from err
        return config if isinstance(config, dict) else {}
    from transformers import PretrainedConfig

    from nail_segformer.model import hub_loading_kwargs

    kwargs = hub_loading_kwargs(model, "model config", revision=revision)
    try:
        return PretrainedConfig.get_config_dict(model, revision=revision, **kwargs)[0]
    except OSError:
        return {}


def resolve_device(device: str):
    """The ``torch.device`` to run PyTorch on: ``auto`` picks CUDA when available, else CPU.

    Raises:
        ValueError: an unknown name, or ``cuda`` on a machine without a usable GPU.
    """
    import torch

    if device not in DEVICE_CHOICES:
        raise ValueError(f"--device must be one of {DEVICE_CHOICES}, got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "--device cuda was asked for but torch sees no CUDA GPU (a CPU-only torch build?); "
            "use --device cpu or auto"
        )
    return torch.device(device)


class TorchRunner:
    """Run a ``SegformerForSemanticSegmentation`` in eval mode without gradients.

    Args:
        model: the loaded model; it is moved to ``device`` and switched to eval mode.
        device: where the model runs and where post-processing happens.
    """

    def __init__(self, model, device):
        self.model = model.to(device).eval()
        self.device = device

    def __call__(self, pixel_values: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            inputs = torch.from_numpy(np.ascontiguousarray(pixel_values, dtype=np.float32))
            return self.model(pixel_values=inputs.to(self.device)).logits.float().cpu().numpy()


class OnnxRunner:
    """Run an ONNX export of the model (see :mod:`nail_segformer.export`) with onnxruntime.

    Args:
        path: the ``.onnx`` file; its input must be ``pixel_values`` and its output ``logits``.
        device: ``cpu``; ``cuda`` or ``auto`` use onnxruntime's CUDA provider when the
            installed build has it (``cuda`` without it is an error).

    Raises:
        ImportError: onnxruntime is missing (the message names the pip extra).
        ValueError: the file is not an ONNX model with the expected input and output, or
            ``cuda`` was asked for and onnxruntime has no CUDA provider.
    """

    def __init__(self, path: str | os.PathLike, device: str = "cpu"):
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError(
                "--onnx needs onnxruntime: pip install 'nail_segformer[export]'"
            ) from err
        if device not in DEVICE_CHOICES:
            raise ValueError(f"--device must be one of {DEVICE_CHOICES}, got {device!r}")
        providers = ["CPUExecutionProvider"]
        has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        if device == "cuda" and not has_cuda:
            raise ValueError(
                "--device cuda was asked for but this onnxruntime has no CUDA provider "
                "(pip install onnxruntime-gpu); use --device cpu or auto"
            )
        if device != "cpu" and has_cuda:
            providers.insert(0, "CUDAExecutionProvider")
        try:
            options = ort.SessionOptions()
            # Idle pool threads sleep instead of spinning, so that the photos' preparation and
            # masks (threads of Predictor.predict_batches) get the cores between its kernels; the
            # forward pass alone measured no slower (benchmarks/RESULTS.md).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"cannot load the ONNX model {path}: {err}") from err
        self.path = path
        self.metadata = self.session.get_modelmeta().custom_metadata_map
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != ["pixel_values"] or "logits" not in outputs:
            raise ValueError(
                f"{path} has inputs {inputs} and outputs {outputs}; expected input "
                "'pixel_values' and output 'logits' (export with python -m nail_segformer.export)"
            )
        self.device = "cuda" if providers[0] == "CUDAExecutionProvider" else "cpu"

    def __call__(self, pixel_values: np.ndarray) -> np.ndarray:
        feed = {"pixel_values": np.ascontiguousarray(pixel_values, dtype=np.float32)}
        return self.session.run(["logits"], feed)[0]


# Elements of float work per band of rows: big enough to keep the kernels busy, small enough
# that a band of a 200 MP photo stays near 64 MB.
_BAND_ELEMENTS = 1 << 24


def _sigmoid(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp overflows to inf for very negative margins: 1/inf = 0
        return np.float32(1) / (np.float32(1) + np.exp(-values))


def _softmax(values: np.ndarray, axis: int) -> np.ndarray:
    shifted = np.exp(values - values.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def _logit(threshold: float) -> float:
    """The margin whose sigmoid is ``threshold`` (-inf for 0)."""
    return -math.inf if threshold <= 0 else math.log(threshold / (1 - threshold))


def _margin_nails(margin: np.ndarray, threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
    """``(nail_mask, probability_of_nail_pixels)`` of a band of two-class margins: the argmax is
    exactly "margin above 0", and the sigmoid is monotonic, so probabilities are computed only
    for pixels near or above the cut."""
    if threshold is None:
        nail = margin > 0
        return nail, _sigmoid(margin[nail])
    cut = _logit(threshold)
    near = margin > cut - 1e-3 * max(1.0, abs(cut))  # float slack around the cut
    probability = _sigmoid(margin[near])
    above = probability > threshold
    nail = np.zeros_like(near)
    nail[near] = above
    return nail, probability[above]


@dataclass
class Scores:
    """One photo's class scores at the size the model gave them, read at the photo's size.

    Attributes:
        values: (K, C, h, w) float32. ``kind`` says what they are.
        kind: ``"margin"`` (C = 1): a two-class model's nail logit minus the background's;
            ``"logits"``: the model's logits; ``"probability"``: class probabilities. With K > 1
            (mirror ``tta``), the K terms' probabilities are averaged.
        size: the photo's ``(height, width)``.
    """

    values: np.ndarray
    kind: str
    size: tuple[int, int]

    def _upsampled_bands(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first_row, (K, C, rows, W) scores)`` upsampled to the photo's size, a band at a time."""
        height, width = self.size
        k, c, h, w = self.values.shape
        # The width pass runs once at the model's row count, the height pass per band: the two
        # passes of one full-size bilinear resize.
        wide = lerp_axis(self.values, linear_taps(w, width), axis=-1)
        rows = max(1, _BAND_ELEMENTS // (k * max(c, 2) * width))
        for start in range(0, height, rows):
            stop = min(height, start + rows)
            yield start, lerp_axis(wide, linear_taps(h, height, start, stop), axis=-2)

    def _probability_band(self, band: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(nail probability, argmax is nail)`` of an upsampled band, each (rows, W)."""
        if self.kind == "margin" and band.shape[0] == 1:  # the argmax is exactly "margin above 0"
            return _sigmoid(band[0, 0]), band[0, 0] > 0
        if self.kind == "margin":  # two classes: each one's softmax share is its margin's sigmoid
            band = _sigmoid(np.concatenate([-band, band], 1))
        elif self.kind == "logits":
            band = _softmax(band, axis=1)
        mean = band.mean(0)
        return mean[NAIL], mean.argmax(0) == NAIL

    def bands(self, threshold: float | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(first_row, nail_mask, probability_of_nail_pixels)`` for consecutive bands of rows.

        ``nail_mask`` is a (rows, W) bool band: nail where the nail probability is above
        ``threshold``, or with None where the nail class wins the argmax (a tie goes to the first
        class, background, as in ``argmax``). The second array holds the float32 nail
        probability of the band's nail pixels, in row-major order. A single two-class margin
        computes probabilities only near and above the cut, since the sigmoid is monotonic.
        """
        for start, band in self._upsampled_bands():
            if self.kind == "margin" and band.shape[0] == 1:
                yield start, *_margin_nails(band[0, 0], threshold)
            else:
                probability, argmax = self._probability_band(band)
                nail = argmax if threshold is None else probability > threshold
                yield start, nail, probability[nail]

    def nail_probability(self) -> np.ndarray:
        """(H, W) float32 nail probability at the photo's size (allocates H x W x 4 bytes)."""
        return np.concatenate(
            [self._probability_band(band)[0] for _, band in self._upsampled_bands()]
        )


def _with_mirror(pixel_values: np.ndarray, tta: bool) -> np.ndarray:
    """Append the left-right mirrored inputs after the originals, so one model call runs both."""
    if not tta:
        return pixel_values
    return np.concatenate([pixel_values, pixel_values[..., ::-1]])


def resize_inputs(
    settings: PixelSettings, images: Sequence[Image.Image], tta: bool = False
) -> np.ndarray:
    """The model input of one batch in resize mode (the mirrored photos after them with ``tta``)."""
    return _with_mirror(settings.pixel_values(images), tta)


def resize_scores(
    logits: np.ndarray, sizes: Sequence[tuple[int, int]], tta: bool = False
) -> Iterator[Scores]:
    """Each photo's :class:`Scores` from the logits of :func:`resize_inputs`' batch.

    Args:
        logits: the runner's output for that batch.
        sizes: the photos' ``(height, width)``.
        tta: the batch holds the mirrored photos too.

    A two-class model's scores are its nail margin (``"margin"``, half the memory of both
    logits); other models give ``"logits"``. With ``tta`` the mirrored photo's scores, flipped
    back, are a second term (bilinear upsampling commutes with a left-right flip).
    """
    kind = "logits"
    if logits.shape[1] == 2:
        logits, kind = (logits[:, NAIL] - logits[:, BACKGROUND])[:, None], "margin"
    n = len(sizes)
    for index, size in enumerate(sizes):
        terms = [logits[index]]
        if tta:
            terms.append(logits[n + index][..., ::-1])
        yield Scores(np.stack(terms), kind, size)


def _window_starts(length: int, window: int, stride: int) -> list[int]:
    """Window offsets covering ``[0, length)``; the last window ends exactly at ``length``."""
    if length <= window:
        return [0]
    return list(range(0, length - window, stride)) + [length - window]


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """``(width, height)`` of a photo resized so that its short side is ``short_side``."""
    factor = short_side / min(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def slide_scores(
    runner,
    settings: PixelSettings,
    image: Image.Image,
    scale: int,
    window: tuple[int, int],
    overlap: float,
    batch_size: int,
    tta: bool = False,
) -> Scores:
    """Run one photo in slide mode (see the module docstring).

    Args:
        runner: a model runner.
        settings: the image processor's resampling filter and normalisation.
        image: RGB photo.
        scale: short side, in pixels, the photo is resized to before windows are cut.
        window: ``(height, width)`` of a window; shrunk to the scaled photo if it is smaller.
        overlap: fraction of a window shared with its neighbour, in [0, 1).
        batch_size: windows per model call (twice as many inputs with ``tta``).
        tta: also run mirrored windows.

    Returns:
        The averaged probabilities at the scaled size, read at the photo's size.
    """
    scaled_w, scaled_h = scaled_size(image.width, image.height, scale)
    scaled = image
    if (scaled_w, scaled_h) != image.size:
        scaled = image.resize((scaled_w, scaled_h), Image.Resampling(settings.resample))
    # The processor's own normalisation, without its resize: the windows must keep the scale.
    pixels = settings.normalise(scaled)
    win_h, win_w = min(window[0], scaled_h), min(window[1], scaled_w)
    boxes = [
        (top, left)
        for top in _window_starts(scaled_h, win_h, max(1, round(win_h * (1 - overlap))))
        for left in _window_starts(scaled_w, win_w, max(1, round(win_w * (1 - overlap))))
    ]
    total = count = None
    for start in range(0, len(boxes), batch_size):
        chunk = boxes[start : start + batch_size]
        crops = np.stack([pixels[:, t : t + win_h, x : x + win_w] for t, x in chunk])
        logits = runner(_with_mirror(crops, tta))
        probs = _softmax(resize_bilinear(logits, (win_h, win_w)), axis=1)
        if tta:
            probs = (probs[: len(chunk)] + probs[len(chunk) :, ..., ::-1]) / 2
        if total is None:
            total = np.zeros((probs.shape[1], scaled_h, scaled_w), np.float32)
            count = np.zeros((1, scaled_h, scaled_w), np.float32)
        for (top, left), prob in zip(chunk, probs, strict=True):
            total[:, top : top + win_h, left : left + win_w] += prob
            count[:, top : top + win_h, left : left + win_w] += 1
    return Scores((total / count)[None], "probability", (image.height, image.width))
