"""A photo that fails to decode in the middle of training: skipped and listed, or named and resumable."""

import gc
import json
import logging
import shutil

import pytest
from support.runs import tiny_run_argv

from nail_segformer import data
from nail_segformer.data import DataError, PairReadError
from nail_segformer.data.bad_pairs import SkipBadPairs, merge_skipped
from nail_segformer.data.dataset import undecoded


class _Split:
    """A stand-in training split whose items ``bad`` cannot be read."""

    def __init__(self, bad, size=5):
        self.bad, self.size = set(bad), size

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        if index in self.bad:
            image = f"/data/Images/1/p{index}.jpg"
            raise PairReadError(f"cannot decode photo {image}: truncated", image=image, mask="m")
        return {"index": index}

    def __getitems__(self, indices):
        return [self[i] for i in indices]


def test_skip_serves_the_next_pair_and_records_the_bad_one(tmp_path):
    log = tmp_path / "_failures.jsonl"
    split = SkipBadPairs(_Split(bad={2}), log)
    assert split[2] == {"index": 3}
    assert split.__getitems__([1, 2, 4]) == [{"index": 1}, {"index": 3}, {"index": 4}]
    assert split[4] == {"index": 4}
    report = tmp_path / "bad_pairs.json"
    assert merge_skipped(log, report, "/data") == 1  # failed twice, listed once
    assert merge_skipped(log, report, "/data") == 1  # merging again adds nothing
    [entry] = json.loads(report.read_text())
    assert entry["kind"] == "skipped during training"
    assert entry["path"] == "Images/1/p2.jpg"  # relative to the data root, as discovery writes
    assert "/data/" not in entry["message"]


def test_nothing_skipped_leaves_no_report(tmp_path):
    assert merge_skipped(tmp_path / "_failures.jsonl", tmp_path / "bad_pairs.json", "/data") == 0
    assert not (tmp_path / "bad_pairs.json").exists()


def test_pair_errors_survive_a_worker_process_boundary():
    # torch re-raises a worker's exception as type(err)(message): that must construct.
    err = PairReadError("cannot decode photo x.jpg", image="x.jpg", mask="x.png")
    again = type(err)(str(err))
    assert isinstance(again, data.ImageReadError) and "x.jpg" in str(again)


def test_a_vanished_data_folder_stops_even_with_skip(tmp_path):
    split = SkipBadPairs(_Split(bad=set(range(5))), tmp_path / "log.jsonl")
    with pytest.raises(DataError, match="in a row could not be read"):
        split[0]


# --------------------------------------------------------------------------- in a real run


def _copy_with_a_truncated_training_photo(synthetic_root, tmp_path):
    root = tmp_path / "nails"
    shutil.copytree(synthetic_root, root)
    dataset_dict, _, _ = data.load_splits(root)  # the split the run draws (same defaults)
    photo = undecoded(dataset_dict["train"])[0]["image"]["path"]
    original = open(photo, "rb").read()
    return root, photo, original


def _truncate(path, original):
    with open(path, "wb") as f:
        f.write(original[: len(original) // 2])  # the header survives: discovery passes it


def test_skip_trains_without_a_pair_that_fails_mid_training(synthetic_root, tmp_path, caplog):
    from nail_segformer.train import main

    root, photo, original = _copy_with_a_truncated_training_photo(synthetic_root, tmp_path)
    _truncate(photo, original)
    assert data.find_pairs(root).problems == []
    output_dir = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="nail_segformer"):
        main(tiny_run_argv(root, output_dir, "--on_bad_pair", "skip", "--resize_cache", "false"))
    assert (output_dir / "model.safetensors").is_file()
    report = json.loads((output_dir / "bad_pairs.json").read_text())
    shown = photo[len(str(root.resolve())) + 1 :]
    assert [e["path"] for e in report if e["kind"] == "skipped during training"] == [shown]
    assert "1 unreadable pair(s) skipped during training" in caplog.text


def test_without_skip_a_mid_training_failure_names_the_file_and_the_run_resumes(
    synthetic_root, tmp_path
):
    from nail_segformer.train import main

    root, photo, original = _copy_with_a_truncated_training_photo(synthetic_root, tmp_path)
    output_dir = tmp_path / "run"
    argv = tiny_run_argv(root, output_dir, "--resize_cache", "false")
    main([*argv, "--num_train_epochs", "1"])  # a clean first epoch: checkpoint-3
    _truncate(photo, original)
    with pytest.raises(DataError) as stopped:
        main(argv)  # resumes for epoch 2, which reads the broken photo
    message = str(stopped.value)
    assert photo in message and "resumes from checkpoint-3" in message
    assert "--on_bad_pair skip" in message
    del stopped  # its traceback holds the failed run's frames, and with them its folder lock
    gc.collect()
    with open(photo, "wb") as f:
        f.write(original)  # fixed
    main(argv)  # the same command again
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 6


def test_with_the_cache_unreadable_pairs_stop_the_run_before_training(synthetic_root, tmp_path):
    from nail_segformer.train import main

    root, photo, original = _copy_with_a_truncated_training_photo(synthetic_root, tmp_path)
    _truncate(photo, original)
    output_dir = tmp_path / "run"
    with pytest.raises(DataError, match="training pair\\(s\\).*cannot be read") as stopped:
        main(tiny_run_argv(root, output_dir))
    assert photo[len(str(root.resolve())) + 1 :] in str(stopped.value)
    assert "--overwrite_output_dir" in str(stopped.value)
    assert not list(output_dir.glob("checkpoint-*"))
    main(tiny_run_argv(root, tmp_path / "skip", "--on_bad_pair", "skip"))
    report = json.loads((tmp_path / "skip" / "bad_pairs.json").read_text())
    assert [e["kind"] for e in report] == ["undecodable file"]


def test_a_stop_from_a_worker_names_the_file_without_the_traceback(tmp_path):
    from nail_segformer.train.pipeline import bad_pair_stop

    # What torch re-raises in the main process for a data-loader worker's error.
    err = PairReadError(
        "Caught PairReadError in DataLoader worker process 0.\n"
        "Original Traceback (most recent call last):\n"
        '  File "worker.py", line 1, in _worker_loop\n'
        "nail_segformer.data.files.PairReadError: cannot decode photo /d/Images/1/p3.jpg: truncated"
    )
    message = str(bad_pair_stop(err, str(tmp_path), step=7, training_files=["/d/Images/1/p3.jpg"]))
    assert message.startswith(
        "training stopped at step 7 on an unreadable pair: cannot decode photo /d/Images/1/p3.jpg"
    )
    assert "Traceback" not in message and "--overwrite_output_dir" in message
    assert "--on_bad_pair skip" in message
    # An evaluation photo is never skipped: the option is not offered for it.
    validation = str(bad_pair_stop(err, str(tmp_path), step=7, training_files=["/d/p9.jpg"]))
    assert "--on_bad_pair" not in validation
