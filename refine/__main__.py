import sys

from refine.cli import main

sys.exit(main())
