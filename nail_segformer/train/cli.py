"""``python run_finetune.py`` / ``python -m nail_segformer.train``: a run, with exit codes.

Exit codes: 0 done; 2 a problem the user can fix (data, output folder, Hub access, a flag, a
value or a combination of them), printed as one line without a traceback; 3 the run finished but the push to the Hub failed
(every file is kept); 130/143 stopped by SIGINT/SIGTERM after saving a checkpoint.
"""

from __future__ import annotations

import logging
import sys

from nail_segformer.data import DataError, DiskFullError
from nail_segformer.hub import PushError
from nail_segformer.model import CheckpointError, HubUnavailableError
from nail_segformer.train.parsing import ArgumentsError
from nail_segformer.train.pipeline import main as run
from nail_segformer.train.run_dir import RunDirError

__all__ = ["main"]

logger = logging.getLogger("run_finetune")


def main(argv: list[str] | None = None) -> int:
    """Run :func:`nail_segformer.train.pipeline.main` and map expected errors to exit codes."""
    try:
        run(argv)
    except KeyboardInterrupt:
        return 130
    except ArgumentsError as err:
        # Mostly raised before logging is set up, so printed the way argparse prints its errors.
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (DataError, DiskFullError, RunDirError, HubUnavailableError, CheckpointError) as err:
        # Expected, user-fixable problems: the message says what to do; no traceback.
        logger.error("%s", err)
        return 2
    except PushError as err:
        logger.error("%s", err)
        return 3
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
