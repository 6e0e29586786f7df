"""AUTHORIZE functions for the tests."""

import threading

NOT_CALLABLE = 42


def only_staff(user, url):
    return user.is_staff


def only_public(user, url):
    return "/private/" not in url


ASKED = []
DENIED = set()  # URLs counting() refuses


def counting(user, url):
    """Allows all but DENIED and remembers each question (tests of the cache)."""
    ASKED.append(url)
    return url not in DENIED


# gated: each question waits until the test opens the gate (threads of the pool).
GATE = threading.Event()


def gated(user, url):
    """Allows everything once GATE is set; remembers each question."""
    ASKED.append(url)
    GATE.wait(5)
    return True
