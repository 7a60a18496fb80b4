"""The Gradio page: a photo in (upload or webcam), the nails drawn, counted and measured out."""

from __future__ import annotations

import tempfile
from pathlib import Path

from PIL import Image

from nail_segformer.app.analysis import MAX_SIDE, analyze, fit_to_max_side, read_upload
from nail_segformer.data.files import ImageReadError
from nail_segformer.predict.predictor import MODES

__all__ = ["MAX_FILE_SIZE", "build_page", "example_photos"]

# Gradio refuses larger uploads before they reach the model; a 200 MP JPEG is about 60 MB.
MAX_FILE_SIZE = "100mb"
NAIL_COLUMNS = ["nail", "area (px)", "area (% of photo)", "mean nail probability"]


def example_photos(folder: str | Path, source: str | Path | None = None) -> list[str]:
    """Photos for the page's examples: up to 8 from ``source``, else 3 synthetic ones written
    into ``folder`` (a user's own photos are never shown unless asked for)."""
    if source is not None:
        suffixes = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
        found = sorted(p for p in Path(source).rglob("*") if p.suffix.lower() in suffixes)
        return [str(p) for p in found[:8]]
    from nail_segformer.synthetic import render_sample

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, category in enumerate(("1", "2", "3")):
        path = folder / f"synthetic_hand_{index + 1}.jpg"
        render_sample(7, index, category).image.save(path, quality=92)
        paths.append(str(path))
    return paths


def build_page(predictor, examples: list[str], work_dir: str | Path):
    """The ``gr.Blocks`` page around a loaded :class:`~nail_segformer.predict.Predictor`.

    Uploads come in as file paths (``gr.File``) and are read by the package's own reader, so a
    file that is no photo, truncated or above the pixel cap gets the package's message; the
    webcam's captures come as images. The page's ``analyze`` endpoint answers
    ``(overlay, summary, mask file, nails table)``.
    """
    import gradio as gr

    masks_dir = Path(work_dir) / "masks"
    masks_dir.mkdir(parents=True, exist_ok=True)
    saved = predictor.threshold

    def run(path, webcam, threshold, mode, tta, progress=gr.Progress()):  # noqa: B008
        progress(0.0, desc="reading the photo")
        try:
            if path:
                image, scale = read_upload(path)
                stem = Path(path).stem
            elif webcam is not None:
                (image, scale), stem = fit_to_max_side(webcam.convert("RGB")), "webcam"
            else:
                raise gr.Error("Upload a photo, or take one with the webcam, first.")
        except ImageReadError as err:
            # The upload's folder is the server's own; the user knows the file by its name.
            raise gr.Error(str(err).replace(str(Path(path).parent) + "/", "")) from None
        progress(0.3, desc="finding the nails")
        result = analyze(predictor, image, float(threshold), mode, bool(tta))
        out = Path(tempfile.mkdtemp(dir=masks_dir)) / f"{stem}_nail_mask.png"
        Image.fromarray(result.mask).save(out, compress_level=1)
        size = f"{image.width}x{image.height}"
        summary = f"**{len(result.nails)} nail(s)** found at a threshold of {threshold:.2f}"
        if scale < 1.0:
            summary += f"; the photo was answered at {size} ({MAX_SIDE} px on its long side)"
        return result.overlay, summary, str(out), result.nails

    with gr.Blocks(title="nail_segformer", analytics_enabled=False) as page:
        gr.Markdown(
            "# Nail segmentation\nUpload a hand photo (or use the webcam): the nails are tinted, "
            "outlined and numbered, and the mask can be downloaded at the photo's size."
        )
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Photo", file_types=["image"], type="filepath")
                webcam = gr.Image(label="Webcam", sources=["webcam"], type="pil")
                threshold = gr.Slider(
                    0.01, 0.99, value=0.5 if saved is None else saved, step=0.01,
                    label="Nail threshold",
                    info="a pixel is nail where its nail probability is above this; "
                    + ("0.5 is the argmax" if saved is None else f"the model's own: {saved:.2f}"),
                )  # fmt: skip
                mode = gr.Radio(
                    list(MODES), value=predictor.mode, label="Mode",
                    info="slide: overlapping windows, for photos whose nails are small",
                )  # fmt: skip
                tta = gr.Checkbox(value=predictor.tta, label="Flip TTA (twice the work)")
                button = gr.Button("Find the nails", variant="primary")
            with gr.Column():
                overlay = gr.Image(
                    label="Nails", type="pil", format="png", interactive=False, elem_id="overlay"
                )
                summary = gr.Markdown(elem_id="summary")
                mask = gr.File(label="Mask (PNG, 255 = nail)", interactive=False)
                table = gr.Dataframe(headers=NAIL_COLUMNS, label="Each nail", interactive=False)
        if examples:
            gr.Examples(examples=[[p] for p in examples], inputs=[upload], label="Examples")
        button.click(
            run,
            inputs=[upload, webcam, threshold, mode, tta],
            outputs=[overlay, summary, mask, table],
            api_name="analyze",
        )
    return page
