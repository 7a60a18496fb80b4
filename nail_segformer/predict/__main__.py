import sys

from nail_segformer.runtime import configure_cli_process

configure_cli_process()  # before the prediction code imports torch
from nail_segformer.predict.cli import main  # noqa: E402

sys.exit(main())
