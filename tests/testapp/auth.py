"""AUTHORIZE functions for the tests."""

NOT_CALLABLE = 42


def only_staff(user, url):
    return user.is_staff


def only_public(user, url):
    return "/private/" not in url
