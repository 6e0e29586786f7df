"""Make the benchmark's database: tables, the items, a user and a session.

Prints ``{"session_key": ...}``: the load client sends it as the session cookie,
so every server looks the user up as it would for a signed-in browser.
"""

from __future__ import annotations

import json
import sys

import django


def prepare(items: int) -> dict:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    from bench.benchapp.models import Item

    call_command("migrate", run_syncdb=True, verbosity=0)
    # Created without signals: no gateway listens yet, and none should count these.
    Item.objects.bulk_create(
        [Item(pk=pk, title="start") for pk in range(1, items + 1)],
        ignore_conflicts=True,
    )
    user, _ = User.objects.get_or_create(username="bench")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return {"session_key": session.session_key}


if __name__ == "__main__":
    django.setup()
    sys.stdout.write(json.dumps(prepare(int(sys.argv[1]))) + "\n")
