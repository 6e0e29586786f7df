"""Capture what pushy publishes, for assertions in your own tests.

Like ``django.core.mail.outbox``: inside ``capture_updates()`` nothing goes to
Redis; each published update is appended to the list the context manager gives::

    from pushy.testing import capture_updates

    with capture_updates() as pushed:
        shot.save()
    assert pushed[0].event == "update"

Updates are published when a transaction commits, and a test transaction never
commits (``TestCase``, pytest-django's ``db``). So the list also shows what the
block queued for a commit still to come, as if it had committed: reading the
list, or leaving the block, takes those updates out of the queue (a later
commit does not publish them again). What a savepoint rollback undid is left
out, and so is anything queued before the block (``setUpTestData``, earlier
saves). With pytest, the ``pushy_updates`` fixture does the same for the whole
test (this module is registered as a pytest plugin).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pushy import publisher
from pushy.messages import Update


class CapturedUpdates(list):
    """A list of updates that first takes in what open transactions queued.

    Every read goes through ``sync()``, so an assertion in the middle of a
    ``TestCase`` sees the saves before it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._marks: dict[Any, int] | None = publisher.pending_marks()

    def sync(self) -> None:
        if self._marks is not None:
            super().extend(publisher.take_pending(self._marks))

    def stop(self) -> None:
        """Take in the rest; after this the list is a plain list."""
        self.sync()
        self._marks = None


def _syncing(name: str) -> Any:
    method = getattr(list, name)

    def read(self: CapturedUpdates, *args: Any) -> Any:
        self.sync()
        return method(self, *args)

    read.__name__ = name
    return read


for _name in (
    "__iter__", "__len__", "__getitem__", "__contains__", "__eq__", "__ne__",
    "__repr__", "__bool__", "__reversed__", "count", "index", "copy",
):  # fmt: skip
    if hasattr(list, _name):
        setattr(CapturedUpdates, _name, _syncing(_name))


@contextlib.contextmanager
def capture_updates() -> Iterator[list[Update]]:
    """Collect published updates in a list instead of sending them to Redis."""
    captured = CapturedUpdates()
    previous = publisher._sender

    def record(
        updates: list[Update], refused: Any = (), quiet: bool = False
    ) -> list[int]:
        # Refusals (already logged) are neither counted nor resynced in Redis:
        # their stand-ins are captured like any update.
        list.extend(captured, updates)
        return [0] * len(updates)

    publisher._sender = record
    try:
        yield captured
    finally:
        try:
            captured.stop()
        finally:
            publisher._sender = previous


try:
    import pytest
except ImportError:  # pytest is optional: the context manager works without it.
    pass
else:

    def pytest_sessionstart(session: pytest.Session) -> None:
        """Say so when a project's tests run with pushy set up but not installed."""
        from pushy.conf import app_missing

        problem = app_missing()
        if problem:
            session.config.issue_config_time_warning(
                pytest.PytestConfigWarning(f"django-pushy: {problem}"), stacklevel=2
            )

    @pytest.fixture
    def pushy_updates() -> Iterator[list[Update]]:
        """The updates published during the test, none of them sent to Redis."""
        with capture_updates() as captured:
            yield captured
