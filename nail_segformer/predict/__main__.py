import sys

from nail_segformer.runtime import configure_cli_process

configure_cli_process()  # flat memory however many photos are evaluated
from nail_segformer.predict.cli import main  # noqa: E402

sys.exit(main())
