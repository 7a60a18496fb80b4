#!/usr/bin/env python
"""Fine-tune SegFormer for nail segmentation: ``python run_finetune.py [config.yaml] [--flags]``.

Every flag is listed by ``python run_finetune.py --help``; see nail_segformer/train/.
"""

import sys

from nail_segformer.runtime import configure_cli_process

if __name__ == "__main__":
    configure_cli_process()  # before the training code imports torch
    from nail_segformer.train.cli import main

    sys.exit(main())
