import sys

from ponder.cli.main import main

sys.exit(main())
