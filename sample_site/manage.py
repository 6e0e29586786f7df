#!/usr/bin/env python
"""manage.py for the demo site; run it from anywhere."""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    # The repository root, so that ``sample_site`` (and an uninstalled pushy) import.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sample_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
