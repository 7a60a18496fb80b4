"""A training photo that does not decode: found before training (cache or not), skipped and listed
or named with how to go on; one that breaks during the run stops it, named and resumable."""

import gc
import json
import shutil

import pytest
from support.runs import tiny_run_argv

from nail_segformer import data
from nail_segformer.data import DataError, PairReadError
from nail_segformer.data.dataset import undecoded


def test_pair_errors_survive_a_worker_process_boundary():
    # torch re-raises a worker's exception as type(err)(message): that must construct.
    err = PairReadError("cannot decode photo x.jpg", image="x.jpg", mask="x.png")
    again = type(err)(str(err))
    assert isinstance(again, data.ImageReadError) and "x.jpg" in str(again)


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


def test_without_the_cache_unreadable_pairs_are_found_before_training_too(synthetic_root, tmp_path):
    from nail_segformer.train import main

    root, photo, original = _copy_with_a_truncated_training_photo(synthetic_root, tmp_path)
    _truncate(photo, original)
    assert data.find_pairs(root).problems == []  # the header survives: discovery passes it
    shown = photo[len(str(root.resolve())) + 1 :]
    argv = tiny_run_argv(root, tmp_path / "run", "--resize_cache", "false")
    with pytest.raises(DataError, match="training pair\\(s\\).*cannot be read") as stopped:
        main(argv)
    assert shown in str(stopped.value) and "--overwrite_output_dir" in str(stopped.value)
    assert not list((tmp_path / "run").glob("checkpoint-*"))
    output_dir = tmp_path / "skip"
    main(tiny_run_argv(root, output_dir, "--resize_cache", "false", "--on_bad_pair", "skip"))
    assert (output_dir / "model.safetensors").is_file()
    report = json.loads((output_dir / "bad_pairs.json").read_text())
    assert [(e["kind"], e["path"]) for e in report] == [("undecodable file", shown)]


def test_a_file_that_breaks_after_the_check_stops_the_run_naming_it(
    synthetic_root, tmp_path, monkeypatch
):
    from nail_segformer.data import cache
    from nail_segformer.train import main

    root, photo, original = _copy_with_a_truncated_training_photo(synthetic_root, tmp_path)
    checked = cache.check_pairs

    def check_then_break(*args, **kwargs):  # the file changes once training has started
        result = checked(*args, **kwargs)
        _truncate(photo, original)
        return result

    monkeypatch.setattr(cache, "check_pairs", check_then_break)
    argv = tiny_run_argv(root, tmp_path / "run", "--resize_cache", "false")
    with pytest.raises(
        DataError, match="training stopped at step 0 on an unreadable pair"
    ) as stopped:
        main(argv)
    assert photo in str(stopped.value) and "--overwrite_output_dir" in str(stopped.value)


def test_a_file_broken_between_runs_is_named_and_the_fixed_run_resumes(synthetic_root, tmp_path):
    from nail_segformer.train import main

    root, photo, original = _copy_with_a_truncated_training_photo(synthetic_root, tmp_path)
    output_dir = tmp_path / "run"
    argv = tiny_run_argv(root, output_dir, "--resize_cache", "false")
    main([*argv, "--num_train_epochs", "1"])  # a clean first epoch: checkpoint-3
    _truncate(photo, original)
    with pytest.raises(DataError) as stopped:
        main(argv)  # resumes for epoch 2, which reads the broken photo
    message = str(stopped.value)
    assert photo[len(str(root.resolve())) + 1 :] in message
    assert "resumes from checkpoint-3" in message
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


def test_an_unreadable_validation_photo_stops_before_training_even_with_skip(
    synthetic_root, tmp_path
):
    from nail_segformer.train import main

    root = tmp_path / "nails"
    shutil.copytree(synthetic_root, root)
    dataset_dict, _, _ = data.load_splits(root)
    photo = undecoded(dataset_dict["validation"])[0]["image"]["path"]
    _truncate(photo, open(photo, "rb").read())
    output_dir = tmp_path / "run"
    with pytest.raises(DataError, match="1 validation pair\\(s\\).*cannot be read") as stopped:
        main(tiny_run_argv(root, output_dir, "--on_bad_pair", "skip"))
    message = str(stopped.value)
    assert photo[len(str(root.resolve())) + 1 :] in message
    assert "Evaluation pairs are never left out" in message and "--on_bad_pair" not in message
    assert not list(output_dir.glob("checkpoint-*"))
