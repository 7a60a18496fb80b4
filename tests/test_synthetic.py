"""Tests for the synthetic nail generator: determinism, layout, masks, difficulty and CLI."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from nail_segformer.synthetic import (
    CATEGORIES,
    IMAGES_DIR,
    MASKS_DIR,
    SyntheticSample,
    generate_dataset,
    render_sample,
)
from nail_segformer.synthetic.cli import main

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
BATCH = 40


@pytest.fixture(scope="module")
def batch() -> list[SyntheticSample]:
    """Samples 0..39 of seed 0, categories cycling 1, 2, 3, 4 as in generate_dataset."""
    return [render_sample(0, i, CATEGORIES[i % len(CATEGORIES)]) for i in range(BATCH)]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _nail_mask(sample: SyntheticSample) -> np.ndarray:
    return np.asarray(sample.mask) > 0


# --------------------------------------------------------------------------- determinism


def test_same_seed_writes_identical_files(tmp_path):
    generate_dataset(tmp_path / "a", n=4, seed=3)
    generate_dataset(tmp_path / "b", n=4, seed=3)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_different_seed_gives_different_photos():
    assert render_sample(0, 0, "2").image.tobytes() != render_sample(1, 0, "2").image.tobytes()


def test_smaller_n_writes_a_prefix_of_larger_n(tmp_path):
    generate_dataset(tmp_path / "small", n=3, seed=0)
    generate_dataset(tmp_path / "large", n=6, seed=0)
    small, large = _files(tmp_path / "small"), _files(tmp_path / "large")
    assert len(small) == 6
    assert all(large[name] == data for name, data in small.items())


# --------------------------------------------------------------------------- layout


def test_every_photo_has_a_mask_with_the_same_stem_and_size(synthetic_root):
    photos = sorted((synthetic_root / IMAGES_DIR).rglob("*.jpg"))
    masks = sorted((synthetic_root / MASKS_DIR).rglob("*.png"))
    assert len(photos) == len(masks) == 16
    for photo, mask in zip(photos, masks, strict=True):
        photo_key = photo.relative_to(synthetic_root / IMAGES_DIR).with_suffix("")
        assert photo_key == mask.relative_to(synthetic_root / MASKS_DIR).with_suffix("")
        with Image.open(photo) as image, Image.open(mask) as label:
            assert (image.mode, label.mode) == ("RGB", "L")
            assert image.size == label.size


def test_writes_only_images_and_masks_folders(synthetic_root):
    assert sorted(p.name for p in synthetic_root.iterdir()) == [IMAGES_DIR, MASKS_DIR]


def test_records_describe_the_written_files(tmp_path):
    records = generate_dataset(tmp_path, n=4, seed=0)
    assert [r["stem"] for r in records] == [f"nail_{c}_{i:04d}" for i, c in enumerate("1234")]
    for record in records:
        mask = np.asarray(Image.open(record["mask_path"])) > 0
        assert Path(record["image_path"]).parent.name == record["category"]
        assert Image.open(record["image_path"]).size == (record["width"], record["height"])
        assert record["nail_fraction"] == pytest.approx(mask.mean())
        assert record["n_nails"] == ndimage.label(mask, EIGHT_CONNECTED)[1]


def test_samples_split_evenly_over_categories(tmp_path):
    records = generate_dataset(tmp_path, n=10, seed=0)
    counts = {c: sum(r["category"] == c for r in records) for c in CATEGORIES}
    assert counts == {"1": 3, "2": 3, "3": 2, "4": 2}
    assert len({r["stem"] for r in records}) == 10


def test_categories_argument_limits_the_folders(tmp_path):
    generate_dataset(tmp_path, n=4, seed=0, categories=["2", "4"])
    assert sorted(p.name for p in (tmp_path / IMAGES_DIR).iterdir()) == ["2", "4"]
    assert len(list((tmp_path / MASKS_DIR / "4").iterdir())) == 2


@pytest.mark.parametrize("size", [(64, 64), (333, 517), (900, 410)])
def test_render_sample_honours_size(size):
    sample = render_sample(0, 1, "3", size=size)
    assert sample.image.size == sample.mask.size == size


def test_random_sizes_vary_in_both_orientations(batch):
    sizes = [s.image.size for s in batch]
    assert all(320 <= side <= 800 for size in sizes for side in size)
    assert any(w > h for w, h in sizes) and any(h > w for w, h in sizes)
    assert len(set(sizes)) > BATCH // 2


# --------------------------------------------------------------------------- masks


def test_masks_are_binary_l_images(batch):
    for sample in batch:
        assert sample.mask.mode == "L" and sample.image.mode == "RGB"
        assert set(np.unique(np.asarray(sample.mask))) <= {0, 255}


def test_n_nails_counts_the_connected_components(batch):
    for sample in batch:
        assert ndimage.label(_nail_mask(sample), EIGHT_CONNECTED)[1] == sample.n_nails >= 1


def test_nails_are_at_least_6_px_apart(batch):
    # Growing each nail by 2 px merges two nails that are 5 px apart or less.
    for sample in batch:
        grown = ndimage.binary_dilation(_nail_mask(sample), EIGHT_CONNECTED, iterations=2)
        assert ndimage.label(grown, EIGHT_CONNECTED)[1] == sample.n_nails


def test_nail_fraction_is_realistic(batch):
    fractions = np.array([_nail_mask(s).mean() for s in batch])
    assert fractions.min() >= 0.005 and fractions.max() <= 0.08
    assert 0.01 <= np.median(fractions) <= 0.035


def test_close_ups_have_larger_nails_than_two_hand_photos(batch):
    def median_fraction(category):
        return np.median([_nail_mask(s).mean() for s in batch if s.category == category])

    assert median_fraction("1") > 2 * median_fraction("3")


def test_nail_colours_also_appear_outside_the_mask(batch):
    # Distractors share the nail colours: count pixels near the median nail colour away from
    # the nails, relative to nail pixels of that colour. Colour alone must not find nails.
    ratios = []
    for sample in batch:
        pixels, nails = np.asarray(sample.image, dtype=np.float32), _nail_mask(sample)
        colour = np.median(pixels[ndimage.binary_erosion(nails, iterations=2)], axis=0)
        similar = np.linalg.norm(pixels - colour, axis=-1) < 30
        away = ~ndimage.binary_dilation(nails, iterations=3)
        ratios.append((similar & away).sum() / max((similar & nails).sum(), 1))
    ratios = np.array(ratios)
    assert np.median(ratios) >= 1.0
    assert (ratios >= 0.5).mean() >= 0.6


# --------------------------------------------------------------------------- refusal


@pytest.mark.parametrize("folder", [IMAGES_DIR, MASKS_DIR])
def test_refuses_to_overwrite_an_existing_data_set(tmp_path, folder):
    existing = tmp_path / folder / "1" / "mine.png"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"user data")
    with pytest.raises(FileExistsError, match=f"{folder}.*empty folder"):
        generate_dataset(tmp_path, n=1)
    assert existing.read_bytes() == b"user data"


def test_writes_into_existing_empty_folders(tmp_path):
    (tmp_path / IMAGES_DIR).mkdir()
    assert len(generate_dataset(tmp_path, n=1)) == 1


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": 0}, "--n"),
        ({"seed": -1}, "--seed"),
        ({"categories": []}, "--categories"),
        ({"categories": ["1", "1"]}, "--categories"),
        ({"categories": ["5"]}, "--categories"),
        ({"jpeg_quality": 0}, "--jpeg_quality"),
    ],
)
def test_generate_dataset_rejects_bad_arguments(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        generate_dataset(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 0, "0"), "valid categories: 1, 2, 3, 4"),
        ((-1, 0, "1"), "seed"),
        ((0, -1, "1"), "index"),
        ((0, 0, "1", (32, 300)), "size"),
    ],
)
def test_render_sample_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        render_sample(*args)


# --------------------------------------------------------------------------- CLI


def test_cli_writes_and_summarises(tmp_path, capsys):
    assert main([str(tmp_path / "out"), "--n", "4", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "wrote 4 samples" in out and "category 4: 1 samples" in out
    assert len(list((tmp_path / "out" / MASKS_DIR).rglob("*.png"))) == 4


def test_cli_refusal_exits_1_and_names_the_folder(tmp_path, capsys):
    (tmp_path / MASKS_DIR).mkdir()
    (tmp_path / MASKS_DIR / "a.png").write_bytes(b"x")
    assert main([str(tmp_path), "--n", "1"]) == 1
    assert str(tmp_path / MASKS_DIR) in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--n", "0"], "--n"),
        (["--seed", "-2"], "--seed"),
        (["--categories", "1", "7"], "--categories"),
        (["--jpeg_quality", "101"], "--jpeg_quality"),
        (["--n", "two"], "--n"),
    ],
)
def test_cli_bad_arguments_exit_2_naming_the_flag(tmp_path, capsys, argv, flag):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), *argv])
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_module_runs_as_a_script(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "nail_segformer.synthetic", str(tmp_path), "--n", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 1 samples" in result.stdout
