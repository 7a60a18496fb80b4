"""Building the data set reads file headers only: pixels wait for the training transform.

A few hundred tiny pairs stand in for a large set; benchmarks/data_scale.py measures time and
memory at 2,000 and 20,000 pairs.
"""

import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from nail_segformer.data import build_dataset_dict, find_pairs, load_splits, split_pairs

N_PAIRS = 300
CATEGORIES = ("1", "2", "3", "4")


@pytest.fixture(scope="module")
def many_pairs(tmp_path_factory):
    """``N_PAIRS`` 64x48 pairs: JPEG photos and PNG 0/255 masks, as a real nail set has."""
    rng = np.random.default_rng(0)
    pool = []
    for _ in range(4):
        photo, mask = io.BytesIO(), io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(photo, "JPEG")
        Image.fromarray((rng.random((48, 64)) > 0.8).astype(np.uint8) * 255).save(mask, "PNG")
        pool.append((photo.getvalue(), mask.getvalue()))
    root = tmp_path_factory.mktemp("many") / "nails"
    for category in CATEGORIES:
        (root / "Images" / category).mkdir(parents=True)
        (root / "Masks" / category).mkdir(parents=True)
    for i in range(N_PAIRS):
        category = CATEGORIES[i % len(CATEGORIES)]
        photo, mask = pool[i % len(pool)]
        (root / "Images" / category / f"n_{i:04d}.jpg").write_bytes(photo)
        (root / "Masks" / category / f"n_{i:04d}.png").write_bytes(mask)
    return root


@pytest.fixture
def decoded(monkeypatch):
    """Paths of the files whose pixels Pillow decodes while the test runs."""
    paths = []
    original = ImageFile.ImageFile.load

    def counting_load(self):
        if self.tile:  # pixel data still to decode
            paths.append(getattr(self, "filename", "?"))
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    return paths


def test_decode_counter_sees_a_decode(many_pairs, decoded):
    mask = next((many_pairs / "Masks" / "1").iterdir())
    Image.open(mask).convert("L")
    assert decoded == [str(mask)]


def test_find_pairs_reads_only_headers(many_pairs, decoded):
    scan = find_pairs(many_pairs)
    assert len(scan.pairs) == N_PAIRS and scan.problems == []
    assert decoded == []


def test_split_and_dataset_dict_decode_nothing(many_pairs, decoded):
    pairs = find_pairs(many_pairs).pairs
    decoded.clear()
    dataset_dict = build_dataset_dict(split_pairs(pairs, 0.1, 0.1, seed=0))
    assert sum(len(ds) for ds in dataset_dict.values()) == N_PAIRS
    assert dataset_dict["train"].features["image"].decode  # decoding is lazy, not off
    assert decoded == []


def test_load_splits_decodes_nothing(many_pairs, decoded):
    dataset_dict, pairs, _ = load_splits(many_pairs)
    assert len(pairs) == N_PAIRS
    assert decoded == []


def test_header_of_a_png_with_exif_orientation_is_rotated_without_decoding(tmp_path, decoded):
    from nail_segformer.data import read_header

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: width and height swap
    path = tmp_path / "rotated.png"
    Image.new("L", (50, 30)).save(path, exif=exif.tobytes())
    assert read_header(path) == (30, 50, "L")
    assert decoded == []
