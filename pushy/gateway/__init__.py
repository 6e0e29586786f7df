"""The runpushy gateway: a gevent WebSocket server that fans Redis updates out.

This package is the only part of pushy that imports gevent. It is started by
``manage.py runpushy`` in a fresh interpreter (see ``pushy.gateway.main``) that
monkey-patches before anything else is imported.
"""
