"""``python -m bench.scale``: many idle connections on one box (bench/scenarios)."""

import sys

from bench.scenarios.scale import main

if __name__ == "__main__":
    sys.exit(main())
