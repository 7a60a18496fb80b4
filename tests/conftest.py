"""Shared fixtures. The environment variables below are read when Hugging Face libraries are
imported, so they are set here, before any test module imports them."""

import atexit
import os
import shutil
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_EVALUATE_OFFLINE"] = "1"
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Training runs build a resize cache in datasets' cache folder: keep it out of the user's home.
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="nail-test-datasets-cache-")
atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], ignore_errors=True)

import pytest  # noqa: E402
from support.runs import tiny_run_argv  # noqa: E402


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
def learned_run_dir(tmp_path_factory):
    """Output folder of a tiny from-scratch run that learned the learnable set (150 steps)."""
    from support.learnable import train_learnable, write_learnable_set

    root = tmp_path_factory.mktemp("learnable")
    return train_learnable(write_learnable_set(root / "data", n=48, seed=0), root / "run")


@pytest.fixture(scope="session")
def tiny_run_dir(synthetic_root, tmp_path_factory):
    """Output folder of a finished 2-epoch run of a tiny from-scratch SegFormer at 64x64."""
    from nail_segformer.train import main

    output_dir = tmp_path_factory.mktemp("runs") / "tiny"
    main(tiny_run_argv(synthetic_root, output_dir))
    return output_dir
