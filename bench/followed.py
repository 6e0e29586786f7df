"""``python -m bench.followed``: what a followed URL costs on a Redis Cluster,
said to be one object or not (bench/scenarios/followed.py)."""

import sys

from bench.scenarios.followed import main

if __name__ == "__main__":
    sys.exit(main())
