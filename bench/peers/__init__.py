"""The servers under test: the registry (registry.py) and each peer's own files.

Nothing is imported here: ``python -m bench.peers.floor`` must patch with gevent
before anything else loads.
"""
