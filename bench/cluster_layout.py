"""``python -m bench.cluster_layout``: channel layouts on Redis Cluster
(bench/scenarios/cluster_layout.py)."""

import sys

from bench.scenarios.cluster_layout import main

if __name__ == "__main__":
    sys.exit(main())
