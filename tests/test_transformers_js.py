"""A real client of the ONNX export: transformers.js under Node segments photos like Predictor.

``python -m nail_segformer.export --model DIR`` writes the layout transformers.js reads
(``config.json``, ``preprocessor_config.json``, ``onnx/model.onnx`` and, for ``dtype: "q8"``,
``onnx/model_quantized.onnx``). Both decide by argmax and upsample the logits the same way, so
on a photo of the model's own size (no resize) the fp32 nail masks are equal (int8 kernels of
two onnxruntime builds may round a near-tie apart). On other sizes
transformers.js resizes the photo with sharp (libvips), not PIL, which moves the model's input
by a fraction of a pixel: measured on the learned 64 px fixture, nail IoU 0.85-0.89 against
``Predictor`` (a nail there is about 10 input pixels wide), every differing pixel within 1.5
input pixels of a nail's edge. The test asserts that band (2 input pixels) and IoU >= 0.75.

transformers.js is installed once with npm into a cache outside the clone
(``--ignore-scripts``: onnxruntime-node's post-install script fetches GPU binaries from a host
that may be unreachable; its CPU binaries come with the package). Without node or npm the test
skips, except under CI (``CI=true``), where that is a failure.
"""

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from support.learnable import SIZE, render

pytest.importorskip("onnxruntime")

from nail_segformer.export import main as export_main  # noqa: E402
from nail_segformer.predict import Predictor  # noqa: E402

PACKAGE = "@huggingface/transformers@4"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nail_segformer" / "npm"
MIN_IOU = 0.75
EDGE_BAND = 2.0  # model input pixels around a nail's edge where resizers may disagree
# Reads each photo, prints one JSON line per photo: the nail mask's size and bytes (base64).
SCRIPT = """
import { pipeline, env } from '@huggingface/transformers';
const [folder, name, dtype, ...photos] = process.argv.slice(2);
env.allowRemoteModels = false;
env.localModelPath = folder;
const segment = await pipeline('image-segmentation', name, { dtype });
for (const photo of photos) {
  const nail = (await segment(photo)).find((s) => s.label === 'nail');
  const out = nail ? { width: nail.mask.width, height: nail.mask.height,
                       data: Buffer.from(nail.mask.data).toString('base64') } : null;
  console.log(JSON.stringify(out));
}
"""


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the transformers.js test must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node_client() -> Path:
    """A folder with transformers.js installed and the segmenting script beside it."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are needed to run transformers.js")
    if not (CACHE / "node_modules" / "@huggingface" / "transformers").is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", str(CACHE),
             PACKAGE],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if done.returncode != 0:
            _unavailable(f"npm install {PACKAGE} failed: {done.stderr[-2000:]}")
    (CACHE / "segment.mjs").write_text(SCRIPT)
    return CACHE


@pytest.fixture(scope="module")
def exported(learned_run_dir, tmp_path_factory) -> Path:
    """A copy of the learned run with its ONNX export, as ``export --model DIR`` writes it."""
    folder = tmp_path_factory.mktemp("js") / "nails"
    shutil.copytree(learned_run_dir, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    assert export_main(["--model", str(folder)]) == 0
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Unseen learnable photos, enlarged to sizes unlike the model's 64x64 input."""
    folder = tmp_path_factory.mktemp("js-photos")
    rng = np.random.default_rng(2024)
    paths = []
    for index, size in enumerate([(SIZE, SIZE), (320, 320), (384, 256), (240, 360)]):
        photo, _ = render(rng)
        path = folder / f"photo{index}.png"
        Image.fromarray(photo).resize(size, Image.Resampling.BILINEAR).save(path)
        paths.append(path)
    return paths


def _masks_from_node(client: Path, folder: Path, dtype: str, photos: list[Path]) -> list:
    done = subprocess.run(
        ["node", str(client / "segment.mjs"), str(folder.parent), folder.name, dtype,
         *map(str, photos)],
        capture_output=True, text=True, timeout=300, cwd=client,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    masks = []
    for line in done.stdout.strip().splitlines():
        record = json.loads(line)
        data = np.frombuffer(base64.b64decode(record["data"]), np.uint8)
        masks.append(data.reshape(record["height"], record["width"]) > 0)
    return masks


# transformers.js's dtype, and the file Predictor runs for the same weights.
DTYPES = {"fp32": "onnx/model.onnx", "q8": "onnx/model_quantized.onnx"}


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_transformers_js_segments_like_the_predictor(node_client, exported, photos, dtype):
    images = [Image.open(p).convert("RGB") for p in photos]
    # transformers.js takes the argmax; the run's nail_threshold is ours alone.
    predictor = Predictor.from_pretrained(
        exported, onnx=exported / DTYPES[dtype], device="cpu", threshold="argmax"
    )
    expected = [p.mask.astype(bool) for p in predictor.predict(images)]
    assert all(mask.any() for mask in expected)  # the learned model finds nails
    actual = _masks_from_node(node_client, exported, dtype, photos)
    assert len(actual) == len(expected)
    for image, js, ours in zip(images, actual, expected, strict=True):
        assert js.shape == (image.height, image.width)
        if image.size == (SIZE, SIZE) and dtype == "fp32":  # no resize: the same decision
            assert np.array_equal(js, ours)
            continue
        iou = (js & ours).sum() / (js | ours).sum()
        assert iou >= MIN_IOU, f"{dtype} {image.size}: nail IoU {iou:.3f} against Predictor's"
        edge = ours ^ ndimage.binary_erosion(ours)
        distance = ndimage.distance_transform_edt(~edge)[js ^ ours]
        band = EDGE_BAND * max(image.size) / SIZE
        assert distance.max(initial=0) <= band, f"{dtype} {image.size}: a difference off the edge"
