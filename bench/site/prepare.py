"""Make the benchmark's database: tables, the items, a user and a session.

Prints ``{"session_key": ...}``: the load client sends it as the session cookie,
so every server looks the user up as it would for a signed-in browser.
"""

from __future__ import annotations

import json
import sys

import django


def prepare(items: int, users: int = 0) -> dict:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    from bench.site.benchapp.models import Item

    call_command("migrate", run_syncdb=True, verbosity=0)
    # Created without signals: no gateway listens yet, and none should count these.
    Item.objects.bulk_create(
        [Item(pk=pk, title="start") for pk in range(1, items + 1)],
        ignore_conflicts=True,
    )

    def sign_in(username: str) -> str:
        user, _ = User.objects.get_or_create(username=username)
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        return session.session_key

    # bench.authz: one session each for ``users`` distinct users.
    keys = [sign_in(f"bench{n}") for n in range(users)]
    return {"session_key": sign_in("bench"), "session_keys": keys}


if __name__ == "__main__":
    django.setup()
    users = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    sys.stdout.write(json.dumps(prepare(int(sys.argv[1]), users)) + "\n")
