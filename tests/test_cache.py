"""The resize cache: built once with Dataset.map, reused by fingerprint, never in the data folder."""

import os

import numpy as np
import pytest
from PIL import Image

from nail_segformer import data
from nail_segformer.data import cache
from nail_segformer.data.transforms import load_working_pair

SIZE = 48


def _root(tmp_path, n=4):
    root = tmp_path / "nails"
    (root / "Images").mkdir(parents=True)
    (root / "Masks").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        width, height = (120, 90) if i % 2 else (64, 36)  # one larger, one smaller than SIZE
        photo = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        mask = np.zeros((height, width), np.uint8)
        mask[5:20, 5:25] = 255
        Image.fromarray(photo).save(root / "Images" / f"p{i}.jpg")
        Image.fromarray(mask).save(root / "Masks" / f"p{i}.png")
    return root


def _train_split(root):
    pairs = [data.Pair(p.image, p.mask, p.category, "train") for p in data.find_pairs(root).pairs]
    return data.build_dataset_dict(pairs)["train"]


@pytest.fixture
def counted(monkeypatch):
    """Counts the pairs the cache builder actually decodes."""
    calls = []
    original = cache._resize_example

    def counting(example, **kwargs):
        calls.append(example["image"]["path"])
        return original(example, **kwargs)

    monkeypatch.setattr(cache, "_resize_example", counting)
    return calls


def _arrow_files(folder):
    return sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob("*.arrow"))


def test_second_build_reuses_the_cache_file(tmp_path, counted):
    split = _train_split(_root(tmp_path))
    first, problems = cache.build_resized_cache(split, SIZE, cache_dir=tmp_path / "cache")
    files = _arrow_files(tmp_path / "cache")
    assert problems == [] and len(files) == 1 and len(counted) == 4
    again, _ = cache.build_resized_cache(split, SIZE, cache_dir=tmp_path / "cache")
    assert _arrow_files(tmp_path / "cache") == files  # no new or rewritten file
    assert len(counted) == 4  # nothing decoded the second time
    assert again[:]["image_rgb"] == first[:]["image_rgb"]


def test_a_changed_file_or_setting_builds_a_new_cache(tmp_path, counted):
    root = _root(tmp_path)
    split = _train_split(root)
    cache.build_resized_cache(split, SIZE, cache_dir=tmp_path / "cache")
    mask = root / "Masks" / "p1.png"
    stamp = mask.stat().st_mtime_ns + 10**9
    os.utime(mask, ns=(stamp, stamp))  # an edited mask
    cache.build_resized_cache(split, SIZE, cache_dir=tmp_path / "cache")
    cache.build_resized_cache(split, SIZE + 16, cache_dir=tmp_path / "cache")
    assert len(_arrow_files(tmp_path / "cache")) == 3
    assert len(counted) == 12


def test_cache_holds_each_pair_at_the_working_size(tmp_path):
    split = _train_split(_root(tmp_path))
    cached, _ = cache.build_resized_cache(split, SIZE, cache_dir=tmp_path / "cache")
    for row in cached:
        image, labels = load_working_pair(row["image"]["path"], row["label"]["path"], SIZE)
        assert (row["height"], row["width"]) == labels.shape
        assert max(labels.shape) <= SIZE
        assert row["image_rgb"] == image.tobytes() and row["label_map"] == labels.tobytes()
    shapes = sorted((row["height"], row["width"]) for row in cached)
    assert shapes == [(36, 48), (36, 48), (48, 48), (48, 48)]  # 64x36 never enlarged


def test_default_folder_is_in_datasets_cache_and_the_data_folder_is_untouched(tmp_path):
    import datasets.config

    root = _root(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    cached, _ = cache.build_resized_cache(_train_split(root), SIZE)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    [cache_file] = {f["filename"] for f in cached.cache_files}
    assert cache_file.startswith(str(datasets.config.HF_DATASETS_CACHE))
    assert cache.default_cache_dir().name == "nail_segformer"


def test_unreadable_pairs_are_left_out_and_reported(tmp_path):
    root = _root(tmp_path)
    photo = root / "Images" / "p1.jpg"
    photo.write_bytes(photo.read_bytes()[: photo.stat().st_size // 2])  # header intact
    Image.fromarray(np.full((36, 64), 7, np.uint8)).save(root / "Masks" / "p2.png")
    cached, problems = cache.build_resized_cache(
        _train_split(root), SIZE, cache_dir=tmp_path / "cache"
    )
    assert len(cached) == 2
    by_kind = {p["kind"]: p for p in problems}
    assert by_kind["unreadable file"]["path"] == str(photo.resolve())
    assert by_kind["mask values"]["path"].endswith("p2.png")
    assert "{7}" in by_kind["mask values"]["message"]
