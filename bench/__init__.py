"""The benchmark: pushy's gateway against Django Channels and a minimal floor.

Run it with ``make bench`` (or ``python -m bench``); see bench/README.md.
"""
