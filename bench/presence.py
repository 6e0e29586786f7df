"""``python -m bench.presence``: many members present on one URL (bench/scenarios)."""

import sys

from bench.scenarios.presence import main

if __name__ == "__main__":
    sys.exit(main())
