"""The AUTHORIZE callable the benchmark's servers ask on every subscribe."""


def authorize(user, url: str) -> bool:
    # Signed-in users only: the load client sends a real session cookie, so the
    # servers do the same session lookup a real deployment does.
    return user.is_authenticated and url.startswith("/api/")
