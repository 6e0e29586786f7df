"""``python -m bench.cluster``: one Redis against a Redis Cluster, the same load
(bench/scenarios/cluster.py)."""

import sys

from bench.scenarios.cluster import main

if __name__ == "__main__":
    sys.exit(main())
