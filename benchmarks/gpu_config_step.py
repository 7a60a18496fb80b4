"""How much GPU memory does a training step of configs/b4-gpu.yaml use?

``benchmarks/gpu.sh`` runs ``configs/b4-gpu.yaml`` through it: the Trainer does not report peak
memory itself. Arguments are those of ``run_finetune.py``; the peak (allocated and reserved,
GiB) is printed as JSON and written to ``$PEAK_JSON`` when set. On a machine without CUDA the
peak fields are ``null`` (useful only to check the command).
"""

import json
import os
import sys

from nail_segformer.runtime import configure_cli_process

if __name__ == "__main__":
    configure_cli_process("cuda")  # what a training run on a GPU sets
    import torch

    from nail_segformer.train.cli import main

    code = main(sys.argv[1:])
    cuda = torch.cuda.is_available()
    peak = {
        "exit_code": code,
        "device": torch.cuda.get_device_name(0) if cuda else None,
        "max_memory_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "max_memory_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if cuda else None,
    }
    print(json.dumps(peak))
    if os.environ.get("PEAK_JSON"):
        with open(os.environ["PEAK_JSON"], "w") as f:
            json.dump(peak, f)
    sys.exit(code)
