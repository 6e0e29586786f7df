"""``python -m bench.slow_clients``: the slow-client rule (bench/scenarios)."""

import sys

from bench.scenarios.slow_clients import main

if __name__ == "__main__":
    sys.exit(main())
