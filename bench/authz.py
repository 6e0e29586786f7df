"""``python -m bench.authz``: what authorization costs (bench/scenarios/authz.py)."""

import sys

from bench.scenarios.authz import main

if __name__ == "__main__":
    sys.exit(main())
