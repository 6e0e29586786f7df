"""``python -m bench.readme``: the README's benchmark section (bench/report)."""

import sys

from bench.report.readme import main

if __name__ == "__main__":
    sys.exit(main())
