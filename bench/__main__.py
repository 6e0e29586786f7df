"""``python -m bench``: pushy against its peers (bench/scenarios/compare.py)."""

import sys

from bench.scenarios.compare import main

if __name__ == "__main__":
    sys.exit(main())
