"""Capture what pushy publishes, for assertions in your own tests.

Like ``django.core.mail.outbox``: inside ``capture_updates()`` nothing goes to
Redis; each published update is appended to the list the context manager gives::

    from pushy.testing import capture_updates

    with capture_updates() as pushed:
        shot.save()
    assert pushed[0].event == "update"

Updates are published when the transaction commits, so in a test that runs
inside a transaction that never commits (``TestCase``, pytest-django's ``db``)
wrap the code in ``captureOnCommitCallbacks(execute=True)`` as well, or use a
transactional test. With pytest, the ``pushy_updates`` fixture does the same
as the context manager (this module is registered as a pytest plugin).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pushy import publisher
from pushy.messages import Update


@contextlib.contextmanager
def capture_updates() -> Iterator[list[Update]]:
    """Collect published updates in a list instead of sending them to Redis."""
    captured: list[Update] = []
    previous = publisher._sender

    def record(updates: list[Update]) -> list[int]:
        captured.extend(updates)
        return [0] * len(updates)

    publisher._sender = record
    try:
        yield captured
    finally:
        publisher._sender = previous


try:
    import pytest
except ImportError:  # pytest is optional: the context manager works without it.
    pass
else:

    @pytest.fixture
    def pushy_updates() -> Iterator[list[Update]]:
        """The updates published during the test, none of them sent to Redis."""
        with capture_updates() as captured:
            yield captured
