"""``manage.py pushy_capture``: publish every change of the captured models.

Thin: checks the set-up and runs pushy.capture.runner.Capture until SIGTERM or
SIGINT. Run one or more (on any hosts); one captures, the others stand by.
"""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pushy.captured import capture_alias, captured_labels, is_postgresql
from pushy.console import show_info


class Command(BaseCommand):
    help = (
        "Capture changes of the models in PUSHY_SETTINGS['CAPTURE'] from "
        "PostgreSQL triggers and publish them; one process captures at a time."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--database",
            default=None,
            help="Database alias to capture (default: CAPTURE_DATABASE).",
        )

    def handle(self, *args: Any, database: str | None = None, **options: Any) -> None:
        alias = database or capture_alias()
        if not captured_labels():
            raise CommandError(
                "PUSHY_SETTINGS['CAPTURE'] names no model of MODELS: "
                "nothing to capture."
            )
        if not is_postgresql(alias):
            raise CommandError(f"The database {alias!r} is not PostgreSQL.")
        try:
            from pushy.capture.runner import Capture
        except ImportError as e:
            raise CommandError(
                f"{e}: pushy_capture needs psycopg 3 "
                "(pip install 'django-pushy[postgres]')."
            ) from e
        show_info("pushy.capture")
        capture = Capture(alias)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: capture.stop())
        capture.run()
