import sys

from nail_segformer.train.cli import main

sys.exit(main())
