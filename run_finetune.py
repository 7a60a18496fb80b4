#!/usr/bin/env python
"""Fine-tune SegFormer for nail segmentation: ``python run_finetune.py [config.yaml] [--flags]``.

Every flag is listed by ``python run_finetune.py --help``; see nail_segformer/train/.
"""

import sys

from nail_segformer.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
