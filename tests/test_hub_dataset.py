"""A data folder written out as a Hugging Face dataset and read back with ``datasets``' own
``load_from_disk``: the same pairs, split and pixels, no metadata but the orientation, no names."""

import io

import numpy as np
import pytest
from PIL import Image

from nail_segformer import data
from nail_segformer.data.cli import main as data_main
from nail_segformer.data.hub_dataset import manifest_path, strip_jpeg_metadata

GPS_IFD, MAKE = 0x8825, 0x010F


def _phone_jpeg(path, size, orientation, seed):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112], exif[MAKE] = orientation, "SecretPhone"
    exif.get_ifd(GPS_IFD)[2] = (48.0, 51.0, 24.0)  # a latitude
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90, exif=exif)


def _mask(path, size):
    mask = np.zeros((size[1], size[0]), np.uint8)
    mask[2:9, 3:12] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "nails"
    for i in range(10):
        category = "12"[i % 2]
        stored = (40, 30)
        seen = (30, 40) if i % 3 == 0 else stored  # orientation 6 turns it upright
        if i == 9:  # a PNG photo among the JPEGs
            path = root / "Images" / category / f"secret_hand_{i:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", stored, (10 * i, 90, 30)).save(path)
            seen = stored
        else:
            _phone_jpeg(
                root / "Images" / category / f"secret_hand_{i:02d}.jpg",
                stored, 6 if i % 3 == 0 else 1, i,
            )  # fmt: skip
        _mask(root / "Masks" / category / f"secret_hand_{i:02d}.png", seen)
    return root


def test_the_written_set_reads_back_as_the_folder_does(folder, tmp_path):
    from datasets import load_from_disk

    out = tmp_path / "written"
    assert data_main([str(folder), "--save_to_disk", str(out)]) == 0
    written = load_from_disk(str(out))
    pairs = data.split_pairs(data.find_pairs(folder).pairs, 0.1, 0.1, seed=42)
    by_split = {s: [p for p in pairs if p.split == s] for s in data.SPLITS}
    assert {s: len(ds) for s, ds in written.items()} == {
        s: len(ps) for s, ps in by_split.items() if ps
    }
    for split, dataset in written.items():
        names = dataset.features["category"].names
        for row, pair in zip(dataset, by_split[split], strict=True):
            # datasets decodes the photo upright from the orientation tag kept in its bytes.
            np.testing.assert_array_equal(
                np.asarray(row["image"].convert("RGB")), np.asarray(data.load_image(pair.image))
            )
            np.testing.assert_array_equal(np.asarray(row["label"]), data.load_labels(pair.mask))
            assert names[row["category"]] == pair.category
    assert (out / "id2label.json").read_text() == '{"0": "background", "1": "nail"}'
    assert "image-segmentation" in (out / "README.md").read_text()


def test_no_metadata_but_the_orientation_and_no_file_name_is_written(folder, tmp_path):
    from datasets import load_from_disk

    out = tmp_path / "written"
    assert data_main([str(folder), "--save_to_disk", str(out)]) == 0
    for split, dataset in (
        load_from_disk(str(out))
        .cast_column("image", __import__("datasets").Image(decode=False))
        .items()
    ):
        for row in dataset:
            assert row["image"]["path"].startswith(f"{split}_")
            with Image.open(io.BytesIO(row["image"]["bytes"])) as im:
                exif = im.getexif()
                assert set(exif) <= {0x0112} and not exif.get_ifd(GPS_IFD)
    for path in out.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert b"secret_hand" not in content and b"SecretPhone" not in content, path
            assert str(folder).encode() not in content, path
    mapping = manifest_path(out)
    assert mapping.parent == out.parent and "secret_hand_00.jpg" in mapping.read_text()


def test_stripping_keeps_the_compressed_image_byte_for_byte(tmp_path):
    path = tmp_path / "p.jpg"
    _phone_jpeg(path, (40, 30), 6, 0)
    original = path.read_bytes()
    stripped = strip_jpeg_metadata(original, 6)
    assert len(stripped) < len(original)
    scan = original.index(b"\xff\xda")
    assert stripped.endswith(original[scan:])  # the entropy-coded data is untouched
    with Image.open(io.BytesIO(stripped)) as im:
        assert dict(im.getexif()) == {0x0112: 6}
    with pytest.raises(ValueError, match="not a JPEG"):
        strip_jpeg_metadata(b"\x89PNG....")


def test_a_folder_with_problems_or_a_used_target_writes_nothing(folder, tmp_path, capsys):
    out = tmp_path / "written"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert data_main([str(folder), "--save_to_disk", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    next((folder / "Masks").rglob("*.png")).unlink()
    assert data_main([str(folder), "--save_to_disk", str(tmp_path / "new")]) == 1
    assert not (tmp_path / "new").exists()


def test_the_push_is_private_holds_no_name_and_loads_back(folder, tmp_path):
    import os
    import subprocess
    import sys

    from datasets import load_dataset, load_from_disk
    from support.hub_stub import HubStub

    token = "hf_" + "q" * 34
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_TOKEN")}
    with HubStub(expected_token=token) as hub:
        env.update(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_TOKEN=token,
                   HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_XET="1")  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "nail_segformer.data", str(folder), "--save_to_disk",
             str(tmp_path / "set"), "--push_to_hub", "--hub_dataset_id", "me/nails"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        repo, files = hub.repos["me/nails"], hub.tree("me/nails")
    assert repo["type"] == "dataset" and repo["visibility"] == "private"
    assert {"README.md", "id2label.json"} <= set(files)
    shards = {name: content for name, content in files.items() if name.endswith(".parquet")}
    assert shards
    for name, content in files.items():
        assert b"secret_hand" not in content and b"SecretPhone" not in content, name
        assert str(folder).encode() not in content, name
    local = tmp_path / "pulled"
    for name, content in shards.items():
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_bytes(content)
    pulled = load_dataset("parquet", data_dir=str(local / "data"))
    written = load_from_disk(str(tmp_path / "set"))
    assert {s: len(d) for s, d in pulled.items()} == {s: len(d) for s, d in written.items()}
