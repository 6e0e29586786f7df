"""A Django app that injects faults into a real gateway, for robustness tests.

Listed in a test gateway's INSTALLED_APPS only: its ready() wraps the hub's
dispatch so that an update for FAIL_URL raises an ordinary exception and one
for CRASH_URL raises ``Crash``, a BaseException no ``except Exception`` catches,
which ends the listener greenlet.
"""

FAIL_URL = "/fault/fail/"
CRASH_URL = "/fault/crash/"


class Crash(BaseException):
    """Escapes every ``except Exception``, as an unforeseen failure would."""
