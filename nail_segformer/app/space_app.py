"""A nail segmentation Space: the model repo's ONNX export, behind a Gradio page.

Written by ``python -m nail_segformer.app --make_space`` as the Space's ``app.py``. It stands
alone (gradio, onnxruntime, numpy, Pillow and huggingface_hub; no torch, no nail_segformer):
it reads the model repo's ``preprocessor_config.json`` (size, resampling, mean and std),
``config.json`` (``nail_threshold``, chosen on validation when the model was trained) and
``onnx/model_quantized.onnx`` when present, else ``onnx/model.onnx``. ``NAIL_MODEL`` overrides
the repo (a Hub id or a local folder); a private repo is read with the ``HF_TOKEN`` secret.
"""

import json
import os
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np
import onnxruntime as ort
from PIL import Image, ImageFilter, ImageOps

MODEL_ID = os.environ.get("NAIL_MODEL") or "__MODEL_ID__"
MAX_SIDE = 2048  # photos are answered at most this long on a side
MAX_MEGAPIXELS = 250  # larger files are refused before their pixels are decoded
MAX_FILE_SIZE = "100mb"
TINT, TINT_ALPHA, OUTLINE = np.array([0, 255, 255], np.float32), 0.45, (255, 255, 0)


def model_folder(model_id: str) -> Path:
    """A local folder as it is; a Hub repo's JSON files and ONNX export, downloaded."""
    if os.path.isdir(model_id):
        return Path(model_id)
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            model_id, allow_patterns=["*.json", "onnx/*"], token=os.environ.get("HF_TOKEN")
        )
    )


class NailModel:
    """The ONNX model with its processor's settings and its threshold."""

    def __init__(self, folder: Path):
        onnx_dir = folder / "onnx"
        files = [onnx_dir / "model_quantized.onnx", onnx_dir / "model.onnx"]
        found = [f for f in files if f.is_file()]
        if not found:
            raise SystemExit(
                f"{folder} has no onnx/model.onnx: run `python -m nail_segformer.export --model "
                "<the model> --push_to_hub --hub_model_id <its repo>` first"
            )
        self.session = ort.InferenceSession(str(found[0]), providers=["CPUExecutionProvider"])
        processor = json.loads((folder / "preprocessor_config.json").read_text())
        size = processor.get("size", {"height": 512, "width": 512})
        self.size = (int(size["width"]), int(size["height"]))
        self.resample = Image.Resampling(processor.get("resample", 2))
        self.scale = float(processor.get("rescale_factor", 1 / 255))
        self.mean = np.array(processor.get("image_mean", [0.485, 0.456, 0.406]), np.float32)
        self.std = np.array(processor.get("image_std", [0.229, 0.224, 0.225]), np.float32)
        config_path = folder / "config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        self.threshold = config.get("nail_threshold")
        labels = {str(k): v for k, v in config.get("id2label", {"1": "nail"}).items()}
        self.nail = int(next((k for k, v in labels.items() if v == "nail"), 1))

    def nail_probability(self, image: Image.Image) -> np.ndarray:
        """(H, W) float32 P(nail) at the photo's size."""
        small = image.resize(self.size, self.resample)
        pixels = (np.asarray(small, np.float32) * self.scale - self.mean) / self.std
        logits = self.session.run(["logits"], {"pixel_values": pixels.transpose(2, 0, 1)[None]})
        logits = logits[0][0]
        # Two classes: P(nail) is the sigmoid of the margin, and bilinear upsampling commutes
        # with the difference, so upsampling the margin equals upsampling both logits.
        margin = logits[self.nail] - logits[1 - self.nail]
        wide = Image.fromarray(margin.astype(np.float32), "F").resize(
            image.size, Image.Resampling.BILINEAR
        )
        return 1 / (1 + np.exp(-np.asarray(wide, np.float32)))


def read_photo(path: str) -> Image.Image:
    """The photo as seen (EXIF orientation), under the pixel cap, at most MAX_SIDE a side."""
    Image.MAX_IMAGE_PIXELS = None  # the cap below is checked on the header instead
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_MEGAPIXELS * 1e6:
                raise gr.Error(
                    f"{Path(path).name} is {im.width}x{im.height} pixels, above the cap of "
                    f"{MAX_MEGAPIXELS} MP"
                )
            scale = min(1.0, MAX_SIDE / max(im.size))
            if scale < 1.0 and im.format == "JPEG":
                im.draft("RGB", (round(im.width * scale), round(im.height * scale)))
            im.load()
            image = ImageOps.exif_transpose(im).convert("RGB")
    except gr.Error:
        raise
    except Exception as err:  # Pillow's errors for a file that is no (whole) image
        raise gr.Error(f"cannot read {Path(path).name} as a photo: {err}") from None
    scale = min(1.0, MAX_SIDE / max(image.size))
    if scale < 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    return image


def overlay(image: Image.Image, mask: np.ndarray) -> Image.Image:
    """The photo with the nails tinted and outlined."""
    pixels = np.array(image, np.float32)
    pixels[mask] = pixels[mask] * (1 - TINT_ALPHA) + TINT * TINT_ALPHA
    inside = Image.fromarray(mask.astype(np.uint8) * 255)
    edge = np.asarray(inside.filter(ImageFilter.MinFilter(3))) == 0
    pixels[mask & edge] = OUTLINE
    return Image.fromarray(pixels.round().astype(np.uint8))


model = NailModel(model_folder(MODEL_ID))


def analyze(path, threshold):
    if not path:
        raise gr.Error("Upload a photo first.")
    image = read_photo(path)
    probability = model.nail_probability(image)
    mask = probability > threshold
    out = Path(tempfile.mkdtemp()) / f"{Path(path).stem}_nail_mask.png"
    Image.fromarray(mask.astype(np.uint8) * 255).save(out)
    share = 100 * mask.mean()
    summary = f"**{share:.2f}%** of the photo is nail at a threshold of {threshold:.2f}"
    return overlay(image, mask), summary, str(out)


with gr.Blocks(title="Nail segmentation", analytics_enabled=False) as demo:
    gr.Markdown(f"# Nail segmentation\nThe nails of a hand photo, by `{Path(MODEL_ID).name}`.")
    with gr.Row():
        with gr.Column():
            upload = gr.File(label="Photo", file_types=["image"], type="filepath")
            default = 0.5 if model.threshold is None else float(model.threshold)
            threshold = gr.Slider(0.01, 0.99, value=default, step=0.01, label="Nail threshold")
            button = gr.Button("Find the nails", variant="primary")
        with gr.Column():
            shown = gr.Image(label="Nails", type="pil", format="png", interactive=False)
            summary = gr.Markdown()
            mask_file = gr.File(label="Mask (PNG, 255 = nail)", interactive=False)
    button.click(analyze, [upload, threshold], [shown, summary, mask_file], api_name="analyze")

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=1).launch(max_file_size=MAX_FILE_SIZE)
