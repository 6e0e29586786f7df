"""``manage.py pushy_triggers``: install or remove the capture triggers by hand.

``migrate`` installs them already (a post_migrate handler); this command also
removes those of models taken out of ``CAPTURE``, or all of them.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError

from pushy.capture import triggers
from pushy.captured import capture_alias, captured_labels, is_postgresql


class Command(BaseCommand):
    help = (
        "Install pushy's capture triggers on the tables of the models in "
        "PUSHY_SETTINGS['CAPTURE'] and remove them from any other table."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--remove",
            action="store_true",
            help="Remove every pushy capture trigger instead.",
        )
        parser.add_argument(
            "--database",
            default=None,
            help="Database alias (default: CAPTURE_DATABASE).",
        )

    def handle(self, *args: Any, remove: bool = False, **options: Any) -> None:
        alias = options["database"] or capture_alias()
        if not is_postgresql(alias):
            raise CommandError(f"The database {alias!r} is not PostgreSQL.")
        labels = frozenset() if remove else captured_labels()
        installed, removed = triggers.sync(alias, labels)
        for label in installed:
            self.stdout.write(f"installed: {label}")
        for table in removed:
            self.stdout.write(f"removed: table {table}")
        missing = [
            f"{label} (table {apps.get_model(label)._meta.db_table})"
            for label in sorted(labels - set(installed))
        ]
        if not installed and not removed and not missing:
            self.stdout.write("nothing to do")
        if missing:
            # The others are done; a script running this must still notice.
            raise CommandError(
                f"no triggers on {', '.join(missing)}: the table does not exist; "
                "run manage.py migrate, or rename it back, then run this again."
            )
