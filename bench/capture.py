"""``python -m bench.capture``: commit-to-browser lag (bench/scenarios/capture.py)."""

import sys

from bench.scenarios.capture import main

if __name__ == "__main__":
    sys.exit(main())
