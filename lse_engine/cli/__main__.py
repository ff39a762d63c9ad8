import sys

from lse_engine.cli import main

sys.exit(main())
