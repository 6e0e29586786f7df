"""``python -m bench.rolling_restart``: the refetches a rolling restart of the
gateways causes, with the update history off and on
(bench/scenarios/rolling_restart.py)."""

import sys

from bench.scenarios.rolling_restart import main

if __name__ == "__main__":
    sys.exit(main())
