"""The benchmark: pushy's gateway against its peers (bench/peers/registry.py).

Run it with ``make bench`` (or ``python -m bench``); bench/README.md maps the folder.
"""
