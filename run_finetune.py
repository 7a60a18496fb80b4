#!/usr/bin/env python
"""Fine-tune SegFormer for nail segmentation.

    python run_finetune.py configs/demo.yaml
    python run_finetune.py --data_root ./nail-segmentation-dataset --output_dir out [--push_to_hub ...]

Every flag is listed by ``python run_finetune.py --help``; see nail_segformer/train.py.
"""

import logging
import sys

from nail_segformer._run_dir import RunDirError
from nail_segformer._trainer import PushError
from nail_segformer.data import DataError
from nail_segformer.model import HubUnavailableError
from nail_segformer.train import main

if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
    except (DataError, RunDirError, HubUnavailableError) as err:
        # Expected, user-fixable problems: the message says what to do; no traceback.
        logging.getLogger("run_finetune").error("%s", err)
        sys.exit(2)
    except PushError as err:
        logging.getLogger("run_finetune").error("%s", err)
        sys.exit(3)
