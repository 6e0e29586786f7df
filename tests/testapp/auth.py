"""AUTHORIZE functions for the tests."""

import threading

NOT_CALLABLE = 42


def only_staff(user, url):
    return user.is_staff


def only_public(user, url):
    return "/private/" not in url


ASKED = []


def counting(user, url):
    """Allows everything and remembers each question (tests of the cache)."""
    ASKED.append(url)
    return True


# gated: each question waits until the test opens the gate (threads of the pool).
GATE = threading.Event()


def gated(user, url):
    """Allows everything once GATE is set; remembers each question."""
    ASKED.append(url)
    GATE.wait(5)
    return True
