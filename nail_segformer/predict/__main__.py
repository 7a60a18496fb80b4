import sys

from nail_segformer.predict.cli import main

sys.exit(main())
