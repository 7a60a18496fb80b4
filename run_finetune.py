#!/usr/bin/env python
"""Fine-tune SegFormer for nail segmentation.

    python run_finetune.py configs/demo.yaml
    python run_finetune.py --data_root ./nail-segmentation-dataset --output_dir out [--push_to_hub ...]

Every flag is listed by ``python run_finetune.py --help``; see nail_segformer/train.py.
"""

import sys

from nail_segformer.train import main

if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
