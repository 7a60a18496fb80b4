"""Settings of the quick tiny-model runs that many tests train."""

TINY_IMAGE_SIZE = 64


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
