"""AUTHORIZE functions for the gateway tests."""


def explode(user, url):
    if "/boom/" in url:
        raise RuntimeError("the site's AUTHORIZE failed")
    return True
