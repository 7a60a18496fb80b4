import sys

from nail_segformer.data.cli import main

sys.exit(main())
