"""Hostile input: no file a user can have ends a command in a traceback.

Photos and masks above the pixel cap (a decompression bomb's header among them) are named with
the cap and how to raise it; the other files go on.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from support.hostile import png_claiming

from nail_segformer.data.cli import main as check_main

REPO = Path(__file__).resolve().parents[1]


def _good_pair(root: Path, stem: str, size=(40, 30)) -> None:
    for folder in ("Images/1", "Masks/1"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 150, 120)).save(root / "Images/1" / f"{stem}.jpg")
    mask = Image.new("L", size, 0)
    mask.paste(255, (5, 5, 15, 12))
    mask.save(root / "Masks/1" / f"{stem}.png")


@pytest.fixture
def bomb_root(tmp_path):
    root = tmp_path / "nails"
    _good_pair(root, "good")
    png_claiming(root / "Images/1" / "bomb.png", 30000, 30000, mode="RGB")  # 900 MP
    png_claiming(root / "Masks/1" / "bomb.png", 30000, 30000)
    return root


def test_checker_names_a_photo_above_the_pixel_cap(bomb_root, capsys):
    assert check_main([str(bomb_root), "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    named = {p["path"]: p for p in summary["problems"]}
    assert "Images/1/bomb.png" in named, summary["problems"]
    message = json.dumps(named["Images/1/bomb.png"])
    assert "900" in message and "NAIL_SEGFORMER_MAX_MEGAPIXELS" in message


def test_checker_on_a_900_mp_header_never_allocates_it(bomb_root):
    # VmHWM, the peak of this process's own memory map: ru_maxrss would keep the pytest
    # parent's peak across fork and exec.
    code = (
        "import sys\n"
        "from nail_segformer.data.cli import main\n"
        "code = main([sys.argv[1], '--json'])\n"
        "status = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
        "print(int(status) // 1024, code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(bomb_root)], capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    peak_mb, exit_code = map(int, done.stdout.strip().splitlines()[-1].split())
    assert exit_code == 1
    assert peak_mb < 500, peak_mb


def test_the_cap_follows_the_environment_variable(tmp_path, monkeypatch, capsys):
    root = tmp_path / "nails"
    _good_pair(root, "small", size=(30, 30))  # 900 pixels
    _good_pair(root, "large", size=(40, 40))  # 1,600 pixels
    monkeypatch.setenv("NAIL_SEGFORMER_MAX_MEGAPIXELS", "0.001")  # 1,000 pixels
    assert check_main([str(root), "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert {p["path"] for p in problems} == {"Images/1/large.jpg", "Masks/1/large.png"}


def test_the_default_cap_admits_a_200_mp_phone_photo():
    from nail_segformer.data import max_megapixels

    assert max_megapixels() >= 16320 * 12240 / 1e6  # a 200 MP phone sensor


def test_pillows_own_limit_never_stops_a_file_under_the_cap(tmp_path, monkeypatch):
    """Pillow checks its pixel limit again while decoding a TIFF: a 200 MP scan, under the
    package's cap, ended in its DecompressionBombError. Here its limit is put below a small
    file's size instead, as the default is below 200 MP."""
    from nail_segformer.data import load_image, load_labels

    Image.new("RGB", (64, 48), (200, 150, 120)).save(tmp_path / "scan.tiff")
    mask = Image.new("L", (64, 48), 0)
    mask.paste(255, (10, 10, 20, 20))
    mask.save(tmp_path / "mask.tiff")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 48 is over twice this
    assert load_image(tmp_path / "scan.tiff").size == (64, 48)
    assert load_labels(tmp_path / "mask.tiff").shape == (48, 64)
    assert Image.MAX_IMAGE_PIXELS == 1000  # the user's limit is back after each read


def test_predict_names_a_photo_above_the_cap(tiny_run_dir, tmp_path, capsys):
    from nail_segformer.predict.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 48), (200, 150, 120)).save(photos / "good.jpg")
    png_claiming(photos / "bomb.png", 30000, 30000, mode="RGB")
    out = tmp_path / "out"
    code = main(["--model", str(tiny_run_dir), "--input", str(photos), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    (failed,) = [line for line in err.splitlines() if line.startswith("  - ")]
    assert "bomb.png" in failed and "NAIL_SEGFORMER_MAX_MEGAPIXELS" in failed
    assert (out / "masks" / "good.png").is_file()


def test_training_names_a_pair_above_the_cap(bomb_root, tmp_path):
    from support.runs import tiny_run_argv

    for i in range(8):
        _good_pair(bomb_root, f"n{i}")
    argv = tiny_run_argv(bomb_root, tmp_path / "run", "--max_steps", "1")
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run(
        [sys.executable, str(REPO / "run_finetune.py"), *argv],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in output, output[-3000:]
    assert "bomb.png" in output and "NAIL_SEGFORMER_MAX_MEGAPIXELS" in output


# --------------------------------------------------------------------------- names not in UTF-8

# A name from a zip made on another system: Latin-1 "é" is not valid UTF-8. Python holds it as a
# lone surrogate; reports show the byte as \xe9, and that text finds the file again.
RAW_NAME = b"ongle_\xe9t\xe9"
SHOWN = "ongle_\\xe9t\\xe9"


def _raw(folder: Path, suffix: str) -> Path:
    return folder / os.fsdecode(RAW_NAME + suffix.encode())


def test_predict_writes_a_non_utf8_name_readably(tiny_run_dir, tmp_path):
    from nail_segformer.predict.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 48), (200, 150, 120)).save(_raw(photos, ".jpg"))
    out = tmp_path / "out"
    assert main(["--model", str(tiny_run_dir), "--input", str(photos), "--output", str(out)]) == 0
    csv_text = (out / "predictions.csv").read_text(encoding="utf-8")
    (record,) = [json.loads(line) for line in (out / "predictions.jsonl").open(encoding="utf-8")]
    assert SHOWN in csv_text and record["file"].endswith(f"{SHOWN}.jpg")
    assert _raw(out / "masks", ".png").is_file()


def test_training_and_its_manifest_handle_non_utf8_names(synthetic_root, tmp_path):
    import shutil

    from support.runs import tiny_run_argv

    root = tmp_path / "nails"
    shutil.copytree(synthetic_root, root)
    photo = sorted((root / "Images").rglob("*.jpg"))[0]
    mask = next((root / "Masks" / photo.parent.name).glob(f"{photo.stem}.*"))
    photo.rename(_raw(photo.parent, photo.suffix))
    mask.rename(_raw(mask.parent, mask.suffix))

    def run(out: Path, *extra: str) -> subprocess.CompletedProcess:
        argv = tiny_run_argv(root, out, "--max_steps", "1", *extra)
        return subprocess.run(
            [sys.executable, str(REPO / "run_finetune.py"), *argv],
            capture_output=True, text=True, timeout=300, cwd=REPO,
            env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"},
        )  # fmt: skip

    first = run(tmp_path / "run")
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    manifest = tmp_path / "run" / "split_manifest.csv"
    assert SHOWN in manifest.read_text(encoding="utf-8")
    again = run(tmp_path / "again", "--manifest", str(manifest))
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert (tmp_path / "again" / "split_manifest.csv").read_bytes() == manifest.read_bytes()


def test_checker_names_a_non_utf8_file_readably(tmp_path, capsys):
    root = tmp_path / "nails"
    _good_pair(root, "good")
    Image.new("RGB", (40, 30)).save(_raw(root / "Images/1", ".jpg"))  # no mask
    assert check_main([str(root), "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert [p["path"] for p in summary["problems"]] == [f"Images/1/{SHOWN}.jpg"]
    assert check_main([str(root)]) == 1
    assert f"Images/1/{SHOWN}.jpg" in capsys.readouterr().out


def test_a_heic_photo_is_named_with_how_to_read_it(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("pillow_heif") is not None:
        pytest.skip("pillow-heif is installed: HEIC photos are read")
    root = tmp_path / "nails"
    _good_pair(root, "good")
    # The start of an iPhone photo: an ISO "ftyp" box of brand "heic", then data Pillow cannot read.
    (root / "Images/1" / "IMG_0001.HEIC").write_bytes(
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
    )
    _good_pair(root, "IMG_0001")
    (root / "Images/1" / "IMG_0001.jpg").unlink()
    assert check_main([str(root), "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    (problem,) = [p for p in problems if p["path"] == "Images/1/IMG_0001.HEIC"]
    assert "HEIC" in json.dumps(problem) and "pip install pillow-heif" in json.dumps(problem)


# --------------------------------------------------------------------------- every case at once


@pytest.fixture(scope="module")
def hostile_tree(tmp_path_factory):
    from support.hostile import write_hostile_tree

    root = tmp_path_factory.mktemp("hostile") / "nails"
    good, bad = write_hostile_tree(root)
    return root, good, bad


def test_checker_names_every_bad_file_and_reads_every_good_pair(hostile_tree, capsys):
    root, good, bad = hostile_tree
    assert check_main([str(root), "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    named = sorted({p["path"] for p in summary["problems"]})
    assert named == sorted(bad)
    assert summary["pairs"] == len(good), summary


def test_a_clean_copy_of_the_readable_pairs_keeps_them_as_seen(hostile_tree, tmp_path, capsys):
    """``--save_to_disk`` of the good pairs alone: every photo stored as the readers see it
    (damaged EXIF blocks included), so a dataset row shows what training read from the file."""
    import shutil

    import numpy as np
    from datasets import Image as ImageFeature
    from datasets import load_from_disk

    from nail_segformer.data import load_image
    from nail_segformer.data.files import EmbeddedImage

    root, good, _ = hostile_tree
    clean = tmp_path / "clean"
    for stem in good:
        for folder in ("Images/1", "Masks/1"):
            (clean / folder).mkdir(parents=True, exist_ok=True)
            for path in (root / folder).glob(f"{stem}.*"):
                shutil.copy(path, clean / folder / path.name)
    assert check_main([str(clean), "--save_to_disk", str(tmp_path / "out")]) == 0
    saved = load_from_disk(str(tmp_path / "out"))
    names = [line.split(",") for line in (tmp_path / "out-files.csv").read_text().splitlines()[1:]]
    assert len(names) == len(good)
    for split, row, image, _ in names:
        stored = saved[split].cast_column("image", ImageFeature(decode=False))[int(row[-5:])]
        as_stored = load_image(EmbeddedImage(stored["image"]["bytes"], row))
        np.testing.assert_array_equal(np.asarray(as_stored), np.asarray(load_image(clean / image)))


def test_checker_names_a_file_it_may_not_read(tmp_path, monkeypatch, capsys):
    import PIL.Image

    root = tmp_path / "nails"
    _good_pair(root, "good")
    _good_pair(root, "locked")
    locked = str((root / "Images/1/locked.jpg").resolve())
    open_image = PIL.Image.open

    def refuse(path, *args, **kwargs):  # the tests run as root, who may read anything
        if str(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return open_image(path, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", refuse)
    assert check_main([str(root), "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    (problem,) = summary["problems"]
    assert problem["path"] == "Images/1/locked.jpg" and "Permission denied" in problem["message"]
    assert summary["pairs"] == 1


def test_training_skips_every_bad_file_and_trains_on_the_rest(hostile_tree, tmp_path):
    from support.runs import tiny_run_argv

    root, good, bad = hostile_tree
    argv = tiny_run_argv(root, tmp_path / "run", "--max_steps", "2", "--on_bad_pair", "skip")
    done = subprocess.run(
        [sys.executable, str(REPO / "run_finetune.py"), *argv],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"},
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in output, output[-3000:]
    skipped = json.loads((tmp_path / "run" / "bad_pairs.json").read_text())
    listed = json.dumps(skipped)
    assert all(Path(path).name in listed for path in bad), listed
    manifest = (tmp_path / "run" / "split_manifest.csv").read_text()
    assert all(f"/{stem}." in manifest for stem in good)


def test_predict_names_every_bad_file_and_predicts_the_rest(hostile_tree, tiny_run_dir, tmp_path):
    root, good, bad = hostile_tree
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "nail_segformer.predict", "--model", str(tiny_run_dir),
         "--input", str(root / "Images"), "--output", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in output, output[-3000:]
    failed = [line for line in output.splitlines() if line.startswith("  - ")]
    assert sorted(Path(line.split(":")[0][4:]).name for line in failed) == sorted(
        Path(path).name for path in bad
    )
    written = {p.stem for p in (out / "masks").rglob("*.png")}
    assert set(good) <= written


# --------------------------------------------------------------------------- a full disk


def _disk_full(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_predict_on_a_full_disk_stops_with_one_error(tiny_run_dir, tmp_path, monkeypatch, capsys):
    from nail_segformer.predict.cli import main
    from nail_segformer.predict.outputs import OutputWriter

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        Image.new("RGB", (64, 48), (200, 150, 20 * i)).save(photos / f"p{i}.jpg")
    monkeypatch.setattr(OutputWriter, "write_images", _disk_full)
    out = tmp_path / "out"
    code = main(["--model", str(tiny_run_dir), "--input", str(photos), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.count("No space left") == 1, err
    assert f"{out}" in err and "Free space there" in err


def test_training_on_a_full_disk_keeps_the_last_checkpoint_and_resumes(
    synthetic_root, tmp_path, monkeypatch, caplog
):
    import errno

    import torch
    from support.runs import tiny_run_argv

    from nail_segformer.train.cli import main
    from nail_segformer.train.run_dir import is_complete_checkpoint

    run = tmp_path / "run"
    argv = tiny_run_argv(synthetic_root, run, "--num_train_epochs", "3")
    save = torch.save

    def full_at_the_second_checkpoint(obj, f, *args, **kwargs):
        if "checkpoint-6" in str(f):
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_at_the_second_checkpoint)
    assert main(argv) == 2
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert f"No space left on the disk holding {run}" in said and "MiB" in said, said
    assert is_complete_checkpoint(run / "checkpoint-3") and not (run / "checkpoint-6").exists()

    monkeypatch.setattr(torch, "save", save)  # space freed
    caplog.clear()
    assert main(argv) == 0
    assert any("resuming from" in r.getMessage() for r in caplog.records)
    assert (run / "model.safetensors").is_file()


def test_building_the_cache_on_a_full_disk_says_so(tmp_path, monkeypatch):
    import datasets.arrow_writer

    from nail_segformer import data
    from nail_segformer.data.cache import build_resized_cache

    root = tmp_path / "nails"
    for i in range(3):
        _good_pair(root, f"n{i}")
    pairs = [data.Pair(p.image, p.mask, p.category, "train") for p in data.find_pairs(root).pairs]
    split = data.build_dataset_dict(pairs)["train"]
    monkeypatch.setattr(datasets.arrow_writer.ArrowWriter, "write_examples_on_file", _disk_full)
    with pytest.raises(data.DiskFullError, match=r"disk holding .*cache: the resize cache needs"):
        build_resized_cache(split, 64, cache_dir=tmp_path / "cache")


# --------------------------------------------------------------------------- damaged checkpoints


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


_DAMAGES = {
    # what a copy, a download or a hand edit can leave: (file, how, what the error names)
    "weights cut short": ("model.safetensors", _cut, "model.safetensors is damaged"),
    "weights empty": ("model.safetensors", lambda p: p.write_bytes(b""), "is damaged"),
    "config a list": (
        "config.json",
        lambda p: p.write_text("[1, 2]"),
        "config.json holds a JSON list",
    ),
    "processor a list": (
        "preprocessor_config.json",
        lambda p: p.write_text("[1, 2]"),
        "preprocessor_config.json holds a JSON list",
    ),
    "labels not a mapping": (
        "config.json",
        lambda p: p.write_text(p.read_text().replace('"id2label": {', '"id2label": "x", "_": {')),
        "id2label is 'x'",
    ),
}


@pytest.fixture(params=list(_DAMAGES), ids=list(_DAMAGES))
def damaged_run(request, tiny_run_dir, tmp_path):
    import shutil

    name, damage, named = _DAMAGES[request.param]
    folder = tmp_path / "damaged"
    shutil.copytree(tiny_run_dir, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    damage(folder / name)
    return folder, named


def test_predict_and_export_name_a_damaged_checkpoint_file(damaged_run, tmp_path):
    """transformers and safetensors ended these in tracebacks of their own."""
    folder, named = damaged_run
    Image.new("RGB", (40, 30), (200, 150, 120)).save(tmp_path / "hand.jpg")
    for command in (
        ["nail_segformer.predict", "--model", str(folder), "--input", str(tmp_path / "hand.jpg"),
         "--output", str(tmp_path / "out")],
        ["nail_segformer.export", "--model", str(folder), "--output", str(tmp_path / "x.onnx")],
    ):  # fmt: skip
        done = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and named in done.stderr, done.stderr


def test_training_names_a_damaged_checkpoint_file(damaged_run, synthetic_root, tmp_path, caplog):
    from nail_segformer.train.cli import main as train_main

    folder, named = damaged_run
    argv = ["--model_name_or_path", str(folder), "--data_root", str(synthetic_root),
            "--output_dir", str(tmp_path / "run"), "--max_steps", "1"]  # fmt: skip
    assert train_main(argv) == 2
    assert any(named in r.getMessage() for r in caplog.records), caplog.text
