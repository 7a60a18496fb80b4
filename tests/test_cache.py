"""The resize cache: built once with Dataset.map, reused by fingerprint, never in the data folder."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nail_segformer import data
from nail_segformer.data import cache
from nail_segformer.data.transforms import decode_cached, load_working_pair

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
    assert again[:]["image_encoded"] == first[:]["image_encoded"]


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
        stored, stored_labels = decode_cached(row["image_encoded"], row["labels_encoded"])
        assert np.array_equal(stored_labels, labels)  # labels exactly
        # The photo as JPEG at quality 95: these photos are pure noise, JPEG's worst case (3.3
        # levels off; phone photos 0.6-1.1, benchmarks/phone_photos.py).
        assert stored.shape == image.shape
        assert np.abs(stored.astype(int) - image).mean() < 4
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
    assert by_kind["undecodable file"]["path"] == str(photo.resolve())
    assert by_kind["mask values"]["path"].endswith("p2.png")
    assert "{7}" in by_kind["mask values"]["message"]


# --------------------------------------------------------------------------- damaged caches


def _cut_at_a_batch_boundary(cache_file) -> None:
    """Keep the first record batch only: a valid Arrow stream with fewer rows."""
    import pyarrow as pa

    data = cache_file.read_bytes()  # a copy: the file is rewritten below
    reader = pa.ipc.open_stream(pa.BufferReader(data))
    first, schema = reader.read_next_batch(), reader.schema
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(first)
    cache_file.unlink()  # a new file: a Dataset may still map the old one
    cache_file.write_bytes(sink.getvalue().to_pybytes())


@pytest.mark.parametrize("cut", ["batch boundary", "0.3", "0.6", "0.9", "last bytes"])
def test_a_cut_cache_is_rebuilt_with_every_row(tmp_path, counted, caplog, cut):
    import logging

    split = _train_split(_root(tmp_path, n=20))  # 3 record batches of 8 rows
    first, _ = cache.build_resized_cache(split, SIZE, cache_dir=tmp_path / "cache")
    expected = first[:]["image_encoded"]
    del first  # it maps the file cut below
    [cache_file] = (tmp_path / "cache").glob("*.arrow")
    size = cache_file.stat().st_size
    if cut == "batch boundary":
        _cut_at_a_batch_boundary(cache_file)
    else:
        keep = size - 50 if cut == "last bytes" else int(size * float(cut))
        data = cache_file.read_bytes()[:keep]
        cache_file.unlink()
        cache_file.write_bytes(data)
    assert cache_file.stat().st_size < size
    with caplog.at_level(logging.INFO, logger="nail_segformer.data.cache"):
        again, problems = cache.build_resized_cache(split, SIZE, cache_dir=tmp_path / "cache")
    assert problems == [] and len(again) == len(split) == 20
    assert again[:]["image_encoded"] == expected
    assert len(counted) == 40  # built twice
    assert any("rebuilding" in r.getMessage() for r in caplog.records), caplog.text


def test_orphan_temporary_files_of_a_killed_build_are_removed(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    orphan, recent = folder / "tmp1a2b3c", folder / "tmp4d5e6f"
    orphan.write_bytes(b"half a cache")
    recent.write_bytes(b"a build still writing")
    old = orphan.stat().st_mtime_ns - 3600 * 10**9
    os.utime(orphan, ns=(old, old))
    cache.build_resized_cache(_train_split(_root(tmp_path)), SIZE, cache_dir=folder)
    assert not orphan.exists() and recent.exists()


@pytest.mark.parametrize("prune", [False, True])
def test_caches_of_other_settings_are_listed_or_pruned(tmp_path, caplog, prune):
    import logging

    split = _train_split(_root(tmp_path))
    folder = tmp_path / "cache"
    cache.build_resized_cache(split, SIZE + 16, cache_dir=folder)  # another configuration
    with caplog.at_level(logging.INFO, logger="nail_segformer.data.cache"):
        cached, _ = cache.build_resized_cache(split, SIZE, cache_dir=folder, prune=prune)
    [current] = {Path(f["filename"]).name for f in cached.cache_files}
    names = {p.name for p in folder.glob("*.arrow")}
    assert current in names and len(names) == (1 if prune else 2)
    said = caplog.text
    assert ("removed 1 other resize cache" in said) if prune else ("--prune_resize_cache" in said)


def test_a_run_after_the_cache_was_cut_trains_on_every_pair(synthetic_root, tmp_path):
    import subprocess
    import sys

    from support.runs import tiny_run_argv

    repo = Path(__file__).resolve().parents[1]
    folder = tmp_path / "cache"

    def run(name: str) -> str:
        argv = tiny_run_argv(synthetic_root, tmp_path / name, "--max_steps", "1")
        done = subprocess.run(
            [sys.executable, str(repo / "run_finetune.py"), *argv, "--resize_cache_dir", str(folder)],
            capture_output=True, text=True, timeout=300, cwd=repo,
            env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"},
        )  # fmt: skip
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
        return done.stderr

    log = run("first").splitlines()
    [built] = [line for line in log if "built resize cache" in line and "training photos" in line]
    [cache_file] = [p for p in folder.glob("*.arrow") if str(p) in built]
    _cut_at_a_batch_boundary(cache_file)
    log = run("second")
    assert "rebuilding the resize cache" in log
    trained = [
        line for line in log.splitlines() if "resize cache" in line and "training photos" in line
    ]
    assert trained and "(12 pairs, training photos at most" in trained[-1], trained


def test_an_unreadable_mask_is_named_not_its_photo(tmp_path):
    root = _root(tmp_path)
    mask = root / "Masks" / "p1.png"
    mask.write_bytes(mask.read_bytes()[:60])  # the header, then nothing
    cached, problems = cache.build_resized_cache(
        _train_split(root), SIZE, cache_dir=tmp_path / "cache"
    )
    (problem,) = problems
    assert len(cached) == 3 and problem["path"] == str(mask.resolve())
    assert problem["kind"] == "undecodable file" and problem["message"].startswith("this mask")


def test_evaluation_from_its_cache_is_bit_for_bit_evaluation_from_the_photos(tmp_path):
    from nail_segformer.data.transforms import attach_transforms, load_image_processor

    root = _root(tmp_path, n=6)
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone photo stored on its side
    photo = Image.open(root / "Images" / "p1.jpg")
    photo.save(root / "Images" / "p1.jpg", exif=exif)
    mask = Image.open(root / "Masks" / "p1.png").transpose(Image.Transpose.ROTATE_270)
    mask.save(root / "Masks" / "p1.png")
    pairs = [
        data.Pair(p.image, p.mask, p.category, "validation") for p in data.find_pairs(root).pairs
    ]
    split = data.build_dataset_dict(pairs)["validation"]
    processor = load_image_processor(None, size=64)
    cached, problems = cache.build_eval_cache(split, processor, cache_dir=tmp_path / "cache")
    assert problems == []
    from_photos = attach_transforms({"validation": split}, processor, None)["validation"]
    from_cache = attach_transforms({"validation": cached}, processor, None)["validation"]
    for index in range(len(split)):
        a, b = from_photos[index], from_cache[index]
        assert a["pixel_values"].dtype == b["pixel_values"].dtype == np.float32
        assert np.array_equal(a["pixel_values"], b["pixel_values"]), index
        assert a["labels"].dtype == b["labels"].dtype and np.array_equal(a["labels"], b["labels"])
    batch = from_cache[:4]  # and as a batch, as the evaluation loader reads it
    assert np.array_equal(
        np.stack(batch["pixel_values"]), np.stack(from_photos[:4]["pixel_values"])
    )
    # Another processor (size, mean, backend) is another cache.
    other = load_image_processor(None, size=96)
    cache.build_eval_cache(split, other, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("resized-*.arrow"))) == 2
