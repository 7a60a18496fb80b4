"""Training from Hugging Face datasets (``--dataset_name``): save_to_disk and Parquet folders read
with ``datasets``' own loaders, images as bytes through the package's readers, labels as class ids."""

import io
import json
import logging

import numpy as np
import pytest
from PIL import Image
from support.runs import tiny_run_argv

from nail_segformer import data
from nail_segformer.data.files import MaskValuesError, class_ids_to_labels
from nail_segformer.data.from_dataset import load_dataset_splits
from nail_segformer.data.hub_dataset import save_hub_dataset


def _dataset_argv(name, output_dir, *extra):
    argv = tiny_run_argv("unused", output_dir, "--dataset_name", str(name), *extra)
    del argv[:2]  # --data_root and --dataset_name are one-of
    return argv


def _png(array) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def saved(synthetic_root, tmp_path_factory):
    """The synthetic folder written with save_to_disk, as ``python -m nail_segformer.data
    --save_to_disk`` writes it (image/label/category, labels as class ids)."""
    folder = tmp_path_factory.mktemp("sets") / "nails"
    _, pairs, _ = data.load_splits(synthetic_root)
    save_hub_dataset(pairs, synthetic_root, folder)
    return folder


def _example_set(n=12, seed=0):
    """Rows shaped like the transformers example's sets: pixel_values and a label of three
    classes (0 background, 1 skin, 2 nail), as plain {bytes, path} structs (Parquet written
    without datasets' metadata)."""
    rng = np.random.default_rng(seed)
    rows = {"pixel_values": [], "label": []}
    for _ in range(n):
        image = rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)
        label = np.zeros((48, 40), np.uint8)
        label[10:40, 5:35] = 1
        label[15:25, 10:20] = 2
        image[label == 2] = (230, 120, 140)
        rows["pixel_values"].append({"bytes": _png(image), "path": None})
        rows["label"].append({"bytes": _png(label), "path": None})
    return rows


def _write_parquet(folder, splits):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    for split, rows in splits.items():
        pq.write_table(pa.table(rows), folder / f"{split}.parquet")


def test_class_ids_are_read_as_they_are_never_by_mask_conventions():
    zero_255 = Image.fromarray(np.array([[0, 255], [0, 0]], np.uint8))
    # As a mask file, {0, 255} would be nail; as a dataset's class ids, 255 is ignored.
    assert data.mask_to_labels(zero_255).tolist() == [[0, 1], [0, 0]]
    assert class_ids_to_labels(zero_255).tolist() == [[0, 255], [0, 0]]
    three = Image.fromarray(np.array([[0, 1], [2, 255]], np.uint8))
    with pytest.raises(MaskValuesError, match="class ids 0, 1, 2, 255"):
        class_ids_to_labels(three)
    assert class_ids_to_labels(three, (2,)).tolist() == [[0, 0], [1, 255]]
    with pytest.raises(MaskValuesError, match="one class id per pixel"):
        class_ids_to_labels(Image.new("RGB", (2, 2)))


def test_a_saved_set_gives_the_folder_s_cached_pixels_and_labels(synthetic_root, saved, tmp_path):
    from nail_segformer.data.cache import build_resized_cache

    folder_splits, _, _ = data.load_splits(synthetic_root)
    dataset_splits = load_dataset_splits(saved)
    assert {s: len(d) for s, d in dataset_splits.items()} == {
        s: len(d) for s, d in folder_splits.items()
    }
    from_folder, _ = build_resized_cache(folder_splits["train"], 96, cache_dir=tmp_path / "a")
    from_dataset, problems = build_resized_cache(
        dataset_splits["train"], 96, cache_dir=tmp_path / "b", class_ids=True
    )
    assert problems == []
    assert "image" not in from_dataset.column_names  # the bytes are not stored twice
    for column in ("image_encoded", "labels_encoded", "height", "width"):
        assert from_dataset[column] == from_folder[column], column


def test_training_runs_from_a_save_to_disk_folder(saved, tmp_path):
    from nail_segformer.train import main

    output_dir = tmp_path / "run"
    metrics = main(_dataset_argv(saved, output_dir))
    assert set(metrics) == {"validation", "test"}
    assert (output_dir / "model.safetensors").is_file()
    card = (output_dir / "README.md").read_text()
    assert "from a Hugging Face dataset" in card and str(saved) not in card


def test_a_parquet_folder_shaped_like_the_transformers_example(tmp_path, caplog):
    from nail_segformer.train import main

    folder = tmp_path / "parquet"
    _write_parquet(folder, {"train": _example_set(12), "valid": _example_set(4, seed=1)})
    # Three classes and no nail id: refused, listing the ids, before anything is trained.
    with pytest.raises(data.DataError, match="class ids 0, 1, 2") as refused:
        main(_dataset_argv(folder, tmp_path / "refused"))
    assert "--nail_values" in str(refused.value) and "train row" in str(refused.value)
    with caplog.at_level(logging.INFO, logger="nail_segformer"):
        metrics = main(_dataset_argv(folder, tmp_path / "run", "--nail_values", "2"))
    assert set(metrics) == {"validation"}  # valid is the validation split; no test split
    assert "validation 4; no test split" in caplog.text


def test_a_missing_validation_split_is_carved_from_train_by_category(tmp_path, caplog):
    from collections import Counter

    from datasets import Dataset

    rows = _example_set(20)
    rows["category"] = ["a"] * 12 + ["b"] * 4 + ["c"] * 4  # text: encoded as a ClassLabel
    only_train = tmp_path / "only-train"
    Dataset.from_dict(rows).save_to_disk(str(only_train))
    with caplog.at_level(logging.INFO, logger="nail_segformer"):
        splits = load_dataset_splits(only_train, validation_fraction=0.25, seed=1)
    assert (
        "validation carved from train (0.25, stratified by category); no test split" in caplog.text
    )
    assert set(splits) == {"train", "validation"}
    train, validation = (splits[s] for s in ("train", "validation"))
    assert len(train) + len(validation) == 20
    assert set(train["row"]).isdisjoint(validation["row"])
    names = validation.features["category"].names
    # A quarter of each category (at seed 1, a random draw would take no "b" and two "c").
    assert Counter(names[c] for c in validation["category"]) == {"a": 3, "b": 1, "c": 1}
    again = load_dataset_splits(only_train, validation_fraction=0.25, seed=1)
    assert again["validation"]["row"] == validation["row"]  # a resumed run gets the same split


def test_a_bad_row_is_reported_like_a_bad_file(tmp_path):
    from nail_segformer.train import main

    rows = _example_set(12)
    rows["pixel_values"][3] = {"bytes": rows["pixel_values"][3]["bytes"][:60], "path": None}
    rows["file_name"] = [f"IMG_{i:04d}.png" for i in range(12)]
    folder = tmp_path / "parquet"
    _write_parquet(folder, {"train": rows, "validation": _example_set(4, seed=1)})
    with pytest.raises(data.DataError, match="training pair\\(s\\).*cannot be read") as stopped:
        main(_dataset_argv(folder, tmp_path / "run", "--nail_values", "2"))
    assert "train row 3" in str(stopped.value)
    output_dir = tmp_path / "skip"
    argv = _dataset_argv(folder, output_dir, "--nail_values", "2", "--on_bad_pair", "skip")
    main([*argv, "--id_column", "file_name"])
    report = json.loads((output_dir / "bad_pairs.json").read_text())
    shown = "train row 3 (IMG_0003.png)"
    assert [(e["kind"], e["path"]) for e in report] == [("undecodable file", shown)]
    manifest = (output_dir / "split_manifest.csv").read_text().splitlines()
    assert manifest[0] == "row,split" and f"{shown},train" in manifest
    assert len(manifest) == 1 + 12 + 4


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--data_root", "x"], "pass one of --data_root"),
        (["--image_column", "photo"], "has no column 'photo'"),
        (["--nail_values", "#ff0000"], "not colours"),
    ],
)
def test_wrong_dataset_arguments_are_named(saved, tmp_path, capsys, caplog, extra, expected):
    from nail_segformer.train.cli import main as cli_main

    assert cli_main(_dataset_argv(saved, tmp_path / "run", *extra)) == 2
    assert expected in capsys.readouterr().err + caplog.text
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_labels_reach_training_and_evaluation_as_class_ids(tmp_path):
    from nail_segformer.train.build import build_model_and_processor, build_trainer, load_data
    from nail_segformer.train.parsing import resolve_args

    rows = _example_set(10)
    for value in rows["label"]:  # 0 background and 255 ignored: a mask file's 0/255 is nail
        label = np.asarray(Image.open(io.BytesIO(value["bytes"])))
        value["bytes"] = _png(np.where(label > 0, 255, 0).astype(np.uint8))
    folder = tmp_path / "parquet"
    validation = {column: values[8:] for column, values in rows.items()}
    _write_parquet(folder, {"train": {c: v[:8] for c, v in rows.items()}, "validation": validation})
    data_args, model_args, training_args, _ = resolve_args(_dataset_argv(folder, tmp_path / "run"))
    dataset_dict, _ = load_data(data_args, training_args.output_dir, resuming=False, write=False)
    model, processor = build_model_and_processor(model_args, data_args, seed=0)
    trainer, datasets = build_trainer(
        model, processor, dataset_dict, data_args, model_args, training_args
    )
    for dataset in (trainer.train_dataset, datasets["validation"]):
        assert set(np.unique(dataset[0]["labels"]).tolist()) == {0, 255}


def test_bytes_follow_the_file_rules_orientation_and_pixel_cap(tmp_path, monkeypatch):
    from nail_segformer.data.files import EmbeddedImage, ImageTooLargeError, load_image
    from nail_segformer.data.transforms import load_working_pair

    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40x30, seen 30x40
    photo = tmp_path / "p.jpg"
    Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(photo, exif=exif)
    embedded = EmbeddedImage(photo.read_bytes(), "train row 0")
    label = EmbeddedImage(_png(np.zeros((40, 30), np.uint8)), "train row 0")
    image, labels = load_working_pair(embedded, label, None, class_ids=True)
    assert image.shape == (40, 30, 3) and labels.shape == (40, 30)
    assert np.array_equal(np.asarray(load_image(photo)), image)
    monkeypatch.setenv("NAIL_SEGFORMER_MAX_MEGAPIXELS", "0.001")
    with pytest.raises(ImageTooLargeError, match="photo train row 0 is 40x30 pixels"):
        load_image(embedded)


def test_a_hub_id_is_read_from_the_cache_offline_and_fails_fast_when_not_cached(saved, tmp_path):
    import os
    import subprocess
    import sys

    from support.hub_stub import HubStub

    token = "hf_" + "q" * 34
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_TOKEN")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_XET="1", HF_TOKEN=token)
    env.pop("HF_DATASETS_CACHE", None)

    def run(args, **extra):
        return subprocess.run(
            [sys.executable, *args], env={**env, **extra}, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip

    with HubStub(expected_token=token) as hub:
        online = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0"}
        push = "import sys; from nail_segformer.data.hub_dataset import push_hub_dataset as p; "
        done = run(["-c", push + "p(sys.argv[1], 'me/nails')", str(saved)], **online)
        assert done.returncode == 0, done.stderr[-3000:]
        # Online once: the set is downloaded (and cached) by datasets' own load_dataset.
        argv = _dataset_argv("me/nails", tmp_path / "online", "--max_steps", "1")
        done = run(["run_finetune.py", *argv], **online)
        assert done.returncode == 0, done.stderr[-3000:]
        assert any("/resolve/" in r.path and r.path.endswith(".parquet") for r in hub.requests)
    # The Hub is gone: the same id trains from the cache.
    offline = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"}
    output_dir = tmp_path / "offline"
    done = run(["run_finetune.py", *_dataset_argv("me/nails", output_dir)], **offline)
    assert done.returncode == 0, done.stderr[-3000:]
    card = (output_dir / "README.md").read_text()
    assert "datasets:\n- me/nails" in card and "huggingface.co/datasets/me/nails" in card
    # Never downloaded: refused at once with what to do, no traceback.
    done = run(["run_finetune.py", *_dataset_argv("me/other", tmp_path / "other")], **offline)
    assert done.returncode == 2
    assert "cannot load dataset 'me/other': offline mode is set" in done.stderr
    assert (
        "Traceback" not in done.stderr and not (tmp_path / "other" / "model.safetensors").exists()
    )


def test_id2label_names_the_classes_and_nail_is_chosen_by_name(tmp_path, capsys, caplog):
    from nail_segformer.train.cli import main as cli_main

    folder = tmp_path / "parquet"
    _write_parquet(folder, {"train": _example_set(12), "validation": _example_set(4, seed=1)})
    (folder / "id2label.json").write_text('{"0": "background", "1": "skin", "2": "nail"}')
    # No nail choice: refused before training, the classes listed by name.
    assert cli_main(_dataset_argv(folder, tmp_path / "refused")) == 2
    said = capsys.readouterr().err + caplog.text
    assert "has the classes 0 background, 1 skin, 2 nail" in said
    assert "e.g. --nail_values nail" in said
    assert cli_main(_dataset_argv(folder, tmp_path / "typo", "--nail_values", "nails")) == 2
    assert "--nail_values nails: dataset" in capsys.readouterr().err + caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="nail_segformer"):
        assert cli_main(_dataset_argv(folder, tmp_path / "run", "--nail_values", "Nail")) == 0
    assert "--nail_values Nail: class id(s) 2 (id2label.json)" in caplog.text
    run_args = json.loads((tmp_path / "run" / "run_args.json").read_text())
    assert run_args["data"]["nail_values"] == "2"


def test_the_checker_reads_every_row_of_a_dataset_and_names_bad_ones(saved, tmp_path, capsys):
    from nail_segformer.data.cli import main as data_main

    assert data_main(["--dataset_name", str(saved)]) == 0
    assert "train 12, validation 2, test 2 rows; 0 problem(s)" in capsys.readouterr().out
    rows = _example_set(6)
    rows["label"][4] = {"bytes": rows["label"][4]["bytes"][:70], "path": None}
    folder = tmp_path / "parquet"
    _write_parquet(folder, {"train": rows, "validation": _example_set(2, seed=1)})
    (folder / "id2label.json").write_text('{"0": "background", "1": "skin", "2": "nail"}')
    assert data_main(["--dataset_name", str(folder)]) == 2  # which class is nail?
    assert "e.g. --nail_values nail" in capsys.readouterr().err
    assert data_main(["--dataset_name", str(folder), "--nail_values", "nail", "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert [(p["kind"], p["path"]) for p in summary["problems"]] == [
        ("undecodable file", "train row 4")
    ]
    assert summary["classes"] == {"0": "background", "1": "skin", "2": "nail"}


def test_rows_without_an_image_and_sets_too_small_to_carve_are_named(tmp_path, caplog):
    from datasets import Dataset

    from nail_segformer.train.cli import main as cli_main

    rows = _example_set(12)
    rows["pixel_values"][5] = None  # a row whose photo is missing
    folder = tmp_path / "parquet"
    _write_parquet(folder, {"train": rows, "validation": _example_set(4, seed=1)})
    argv = _dataset_argv(folder, tmp_path / "run", "--nail_values", "2", "--on_bad_pair", "skip")
    assert cli_main(argv) == 0
    report = json.loads((tmp_path / "run" / "bad_pairs.json").read_text())
    assert [e["path"] for e in report] == ["train row 5"]
    one = tmp_path / "one-row"
    Dataset.from_dict({k: v[:1] for k, v in _example_set(1).items()}).save_to_disk(str(one))
    assert cli_main(_dataset_argv(one, tmp_path / "tiny")) == 2
    assert "too few to carve one from" in caplog.text
