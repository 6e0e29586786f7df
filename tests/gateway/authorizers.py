"""AUTHORIZE functions for the gateway tests."""


def explode(user, url):
    if "/boom/" in url:
        raise RuntimeError("the site's AUTHORIZE failed")
    return True


def slow(user, url):
    """Allows after a pause: longer than a ping wait when the URL says so."""
    import time

    if "/slow/" in url:
        time.sleep(2.5)
    return True
