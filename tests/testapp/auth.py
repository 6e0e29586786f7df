"""AUTHORIZE functions for the tests."""

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
