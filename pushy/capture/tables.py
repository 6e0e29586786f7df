"""Whether each captured model can be captured now, and saying so once.

A captured model goes silent, or its changes can no longer be loaded, when its
table is renamed or dropped outside ``migrate``, loses its triggers (a table
rebuilt by hand, ``pushy_triggers --remove``, ``DISABLE TRIGGER``), or no longer
matches the model (a column renamed). None of that is the database connection
failing: the capture must not reconnect over it (that resynced every client and
repeated), and must go on with the other models.

The capture process asks the catalog (``catalog_problems``) when it becomes
active and every few seconds, and learns of a mismatch the catalog cannot show
from a load that fails (``rows_problem``). ``Health`` logs each model's problem
once, with the fix, and says when it is gone: the model's pages must then
resync, since what changed meanwhile was not published.
"""

from __future__ import annotations

import dataclasses
import logging

from django.db import connections, models

from pushy.capture.triggers import TRIGGER_NAMES
from pushy.updates import model_label

logger = logging.getLogger(__name__)

# Per captured table (w.name, quoted): does it exist, how many of pushy's
# triggers on it fire, and which other tables carry triggers that send its
# label (a renamed table keeps its triggers, and they still send the label).
CATALOG_SQL = """
SELECT w.label,
       to_regclass(w.name) IS NOT NULL,
       (SELECT count(*) FROM pg_trigger t
        WHERE t.tgrelid = to_regclass(w.name) AND t.tgname = ANY(%s)
          AND t.tgenabled IN ('O', 'A')),
       ARRAY(SELECT DISTINCT c.relname::text
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
             WHERE t.tgname = ANY(%s) AND pg_table_is_visible(c.oid)
               AND c.oid IS DISTINCT FROM to_regclass(w.name)
               AND position(convert_to(w.label, 'UTF8') || '\\x00'::bytea
                            IN t.tgargs) = 1
             ORDER BY 1)
FROM unnest(%s::text[], %s::text[]) AS w (label, name)
"""


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why a model is not captured: ``kind`` (table, triggers, rows), and the fix."""

    kind: str
    text: str


def catalog_problems(
    using: str, models_: list[type[models.Model]]
) -> dict[str, Problem | None]:
    """Each model's problem that the catalog shows (None: table and triggers fine)."""
    qn = connections[using].ops.quote_name
    tables = {model_label(m): m._meta.db_table for m in models_}
    names = list(TRIGGER_NAMES)
    with connections[using].cursor() as cursor:
        cursor.execute(
            CATALOG_SQL,
            [names, names, list(tables), [qn(t) for t in tables.values()]],
        )
        rows = cursor.fetchall()
    return {
        label: _problem(tables[label], exists, enabled, elsewhere)
        for label, exists, enabled, elsewhere in rows
    }


def _problem(
    table: str, exists: bool, enabled: int, elsewhere: list[str]
) -> Problem | None:
    if not exists:
        where = (
            f"renamed? pushy's triggers for it are on {', '.join(elsewhere)}"
            if elsewhere
            else "renamed or dropped?"
        )
        return Problem(
            "table",
            f"its table {table} does not exist ({where}). "
            "Fix: rename the table back, or make the model and the database "
            "agree (manage.py migrate; restart pushy_capture after changing the "
            "model's db_table), then run manage.py pushy_triggers",
        )
    if enabled < len(TRIGGER_NAMES):
        what = (
            "has no capture triggers"
            if not enabled
            else f"has only {enabled} of its {len(TRIGGER_NAMES)} capture "
            "triggers enabled"
        )
        return Problem(
            "triggers",
            f"its table {table} {what}, so its changes are not seen. "
            "Fix: run manage.py pushy_triggers (or migrate)",
        )
    return None


def rows_problem(model: type[models.Model], error: Exception) -> Problem:
    """A model whose rows the database refuses to load (a column renamed...)."""
    lines = str(error).strip().splitlines()  # the first: no query text
    reason = lines[0] if lines else type(error).__name__
    return Problem(
        "rows",
        f"its rows cannot be loaded from table {model._meta.db_table} ({reason}). "
        "Fix: make the database match the model (manage.py migrate), or restart "
        "pushy_capture after deploying the changed model",
    )


def probe(using: str, model: type[models.Model]) -> None:
    """Raise what loading ``model``'s rows would raise (EXPLAIN: reads no row)."""
    model._base_manager.using(using).all().explain()


class Health:
    """The models not captured now, and why; each change of that logged once."""

    def __init__(self) -> None:
        self.problems: dict[str, Problem] = {}

    def broken(self, label: str) -> bool:
        return label in self.problems

    def update(self, label: str, problem: Problem | None) -> bool:
        """Record ``label``'s state; True when it just became capturable again."""
        old = self.problems.pop(label, None)
        if problem is not None:
            self.problems[label] = problem
            if old is None or old.kind != problem.kind:
                logger.warning(
                    "pushy capture: %s is not captured: %s", label, problem.text
                )
            return False
        if old is not None:
            logger.info(
                "pushy capture: %s is captured again; its pages will be told to "
                "resync (its changes meanwhile were not published)",
                label,
            )
        return old is not None
