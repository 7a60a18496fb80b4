import sys

from nail_segformer.runtime import configure_cli_process

configure_cli_process()  # flat memory whatever the size of the photos
from nail_segformer.app.cli import main  # noqa: E402

sys.exit(main())
