"""Evaluate a saved model on a validation split, in one process or several (test_distributed.py).

    torchrun --nproc_per_node=2 tests/support/ddp_eval.py MODEL_DIR DATA_ROOT WORK_DIR
    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml tests/support/ddp_eval.py ...

The model, processor, eval transform, ``NailTrainer`` and streaming metric are built by the same
functions as ``run_finetune.py``; only the split differs: 7 validation photos out of the 16 of
``conftest.synthetic_root``, evaluated 2 per device, so on 2 processes the distributed sampler
pads the last global batch (7 is not a multiple of 2 x 2). Every rank writes
``WORK_DIR/rank<RANK>.json``: the metrics and the confusion matrix they were computed from.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from nail_segformer.train import build, parse_args

VALIDATION_FRACTION = 0.45  # 7 of 16 photos
EVAL_BATCH_SIZE = 2


class RecordingModule:
    """Stands in for the hook's evaluate module, keeping each evaluation's summed confusion."""

    def __init__(self, module):
        self.module = module
        self.confusion = None
        self.finished: list[list[list[int]]] = []

    def __len__(self) -> int:
        return len(self.module)

    def add_batch(self, **rows):
        batch = np.asarray(rows["confusion"], dtype=np.int64).sum(axis=0)
        self.confusion = batch if self.confusion is None else self.confusion + batch
        self.module.add_batch(**rows)

    def compute(self, **kwargs):
        side = round(len(self.confusion) ** 0.5)
        self.finished.append(self.confusion.reshape(side, side).tolist())
        self.confusion = None
        return self.module.compute(**kwargs)


def evaluate(model_dir: str, data_root: str, work_dir: str) -> dict:
    """Evaluate ``model_dir`` on the validation split; returns metrics and confusion matrix."""
    data_args, model_args, training_args = parse_args(
        [
            "--data_root",
            str(data_root),
            "--model_name_or_path",
            str(model_dir),
            "--output_dir",
            str(work_dir),
            "--validation_fraction",
            str(VALIDATION_FRACTION),
            "--test_fraction",
            "0",
            "--per_device_eval_batch_size",
            str(EVAL_BATCH_SIZE),
            "--dataloader_num_workers",
            "0",
            "--use_cpu",
            "true",
            "--disable_tqdm",
            "true",
        ]
    )
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    dataset_dict, _ = build.load_data(
        data_args, str(work_dir), resuming=False, write=training_args.should_save
    )
    model, processor = build.build_model_and_processor(model_args, data_args, training_args.seed)
    trainer, datasets = build.build_trainer(
        model, processor, dataset_dict, data_args, model_args, training_args
    )
    streaming = trainer.compute_metrics
    streaming.metric = RecordingModule(streaming.metric)
    metrics = trainer.evaluate(datasets["validation"])
    (confusion,) = streaming.metric.finished
    return {
        "world_size": training_args.world_size,
        "validation_size": len(datasets["validation"]),
        "metrics": metrics,
        "confusion": confusion,
    }


def main(argv: list[str]) -> None:
    model_dir, data_root, work_dir = argv
    result = evaluate(model_dir, data_root, work_dir)
    rank = os.environ.get("RANK", "0")
    (Path(work_dir) / f"rank{rank}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
