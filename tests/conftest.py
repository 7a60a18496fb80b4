"""Shared fixtures. The environment variables below are read when Hugging Face libraries are
imported, so they are set here, before any test module imports them."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_EVALUATE_OFFLINE"] = "1"
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402

TINY_IMAGE_SIZE = 64


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A small synthetic nail set (16 photos, 4 categories) in the Images/Masks layout.

    Session-scoped and read-only by convention: tests that modify data copy it first.
    """
    from nail_segformer.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synthetic") / "nails"
    generate_dataset(root, n=16, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_run_dir(synthetic_root, tmp_path_factory):
    """Output folder of a finished 2-epoch run of a tiny from-scratch SegFormer at 64x64."""
    from nail_segformer.train import main

    output_dir = tmp_path_factory.mktemp("runs") / "tiny"
    main(tiny_run_argv(synthetic_root, output_dir))
    return output_dir


def tiny_run_argv(data_root, output_dir, *extra):
    """Command-line arguments of a quick tiny-model run (a few seconds on 2 CPU cores)."""
    return [
        "--data_root",
        str(data_root),
        "--output_dir",
        str(output_dir),
        "--from_scratch_preset",
        "tiny",
        "--image_size",
        str(TINY_IMAGE_SIZE),
        "--num_train_epochs",
        "2",
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "4",
        "--learning_rate",
        "1e-3",
        "--dataloader_num_workers",
        "0",
        "--logging_steps",
        "1",
        "--use_cpu",
        "true",
        "--seed",
        "0",
        "--disable_tqdm",
        "true",
        *extra,
    ]
