import sys

from nail_segformer.synthetic.cli import main

sys.exit(main())
