"""The capture triggers: SQL, and installing or removing them through Django.

One plpgsql function, ``pushy_capture_notify()``, and four statement-level
triggers per captured table. The row triggers' transition tables give the
statement's rows at once, so an ``UPDATE`` of 100,000 rows runs the function once
and sends a handful of notifications, each a JSON object under PostgreSQL's
8,000-byte payload limit::

    {"m": "app_label.model_name", "e": "i" | "u" | "d" | "t", "x": "<txid>",
     "k": [pk, pk, ...]}

(``x``, the transaction id, is for people reading notifications; the capture
process does not need it.)

``e`` is insert, update, delete or truncate (no ``k``: the whole table changed).
For an integer primary key, an element of ``k`` may be ``[first, last]``: every
key from first to last, inclusive (the statement changed a run of consecutive
keys).
A primary key whose JSON is longer than ``MAX_KEY_BYTES`` travels as ``null``;
the capture process then asks for a resync of the model instead. NOTIFY is
delivered when the transaction commits, and never for one that rolls back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.db import connections, models, router, transaction

from pushy import conf
from pushy.captured import capture_alias, captured_labels, is_postgresql
from pushy.updates import model_label

logger = logging.getLogger(__name__)

FUNCTION = "pushy_capture_notify"
TRIGGER_PREFIX = "pushy_capture_"
# A notification holds keys up to CHUNK_BYTES past its first, each at most
# MAX_KEY_BYTES: at most 7,000 bytes of keys, the label and txid besides.
CHUNK_BYTES = 5000
MAX_KEY_BYTES = 2000

# Run without parameters, so % is plpgsql's format(), not a placeholder.
FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION pushy_capture_notify() RETURNS trigger
LANGUAGE plpgsql AS $pushy$
DECLARE
    label text := TG_ARGV[0];
    pk_column text := TG_ARGV[1];
    channel text := TG_ARGV[2];
    -- For logs and debugging; never forces a transaction id on a no-op.
    txid text := txid_current_if_assigned()::text;
    payload text;
    query text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify(
            channel, json_build_object('m', label, 'e', 't', 'x', txid)::text);
        RETURN NULL;
    END IF;
    IF TG_ARGV[3] = 'int' THEN
        -- Integer keys travel as runs: [first, last] for consecutive keys, so an
        -- UPDATE of a range of 100,000 rows is one notification.
        query := $q$
        SELECT json_build_object(
            'm', %L, 'e', %L, 'x', %L, 'k', json_agg(k ORDER BY lo))::text
        FROM (
            SELECT k, lo,
                   sum(octet_length(k::text) + 1) OVER (ORDER BY lo) / {chunk} AS chunk
            FROM (
                SELECT lo, CASE WHEN lo = hi THEN to_json(lo)
                                ELSE json_build_array(lo, hi) END AS k
                FROM (
                    SELECT min(key) AS lo, max(key) AS hi
                    FROM (SELECT key, key - row_number() OVER (ORDER BY key) AS run
                          FROM (%s) AS changed (key)) AS numbered
                    GROUP BY run
                ) AS runs
            ) AS keyed
        ) AS sized
        GROUP BY chunk ORDER BY chunk
        $q$;
    ELSE
        query := $q$
        SELECT json_build_object(
            'm', %L, 'e', %L, 'x', %L, 'k', json_agg(k ORDER BY n))::text
        FROM (
            SELECT k, n,
                   sum(octet_length(k::text) + 1) OVER (ORDER BY n) / {chunk} AS chunk
            FROM (
                SELECT CASE WHEN octet_length(to_json(key)::text) > {max_key}
                            THEN 'null'::json ELSE to_json(key) END AS k,
                       row_number() OVER () AS n
                FROM (%s) AS changed (key)
            ) AS keyed
        ) AS sized
        GROUP BY chunk ORDER BY chunk
        $q$;
    END IF;
    FOR payload IN EXECUTE format(
        query,
        label,
        CASE TG_OP WHEN 'INSERT' THEN 'i' WHEN 'UPDATE' THEN 'u' ELSE 'd' END,
        txid,
        CASE TG_OP
            WHEN 'DELETE' THEN format('SELECT %I FROM pushy_old', pk_column)
            ELSE format('SELECT %I FROM pushy_new', pk_column)
        END)
    LOOP
        PERFORM pg_notify(channel, payload);
    END LOOP;
    IF TG_OP = 'UPDATE' THEN
        -- Rows whose primary key changed: their old key is gone.
        FOR payload IN EXECUTE format(
            $q$
            SELECT json_build_object(
                'm', %L, 'e', 'd', 'x', %L, 'k', json_agg(to_json(key)))::text
            FROM (SELECT %I FROM pushy_old EXCEPT SELECT %I FROM pushy_new)
                AS gone (key)
            HAVING count(*) > 0
            $q$, label, txid, pk_column, pk_column)
        LOOP
            -- Rare (Django never changes a primary key): one notification, or a
            -- resync when the keys do not fit in one.
            IF octet_length(payload) > {chunk} THEN
                payload := json_build_object('m', label, 'e', 't', 'x', txid)::text;
            END IF;
            PERFORM pg_notify(channel, payload);
        END LOOP;
    END IF;
    RETURN NULL;
END
$pushy$;
""".replace("{chunk}", str(CHUNK_BYTES)).replace("{max_key}", str(MAX_KEY_BYTES))

# (name suffix, event, REFERENCING clause)
_TRIGGERS = (
    ("insert", "INSERT", "REFERENCING NEW TABLE AS pushy_new"),
    ("update", "UPDATE", "REFERENCING OLD TABLE AS pushy_old NEW TABLE AS pushy_new"),
    ("delete", "DELETE", "REFERENCING OLD TABLE AS pushy_old"),
    ("truncate", "TRUNCATE", ""),
)
# The names of a captured table's triggers (each table has all of them).
TRIGGER_NAMES = tuple(TRIGGER_PREFIX + suffix for suffix, _, _ in _TRIGGERS)


def notify_channel() -> str:
    """The PostgreSQL NOTIFY channel the triggers send to."""
    return conf.get("CHANNEL_PREFIX") + "capture"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def trigger_sql(model: type[models.Model], channel: str, qn) -> list[str]:
    """Statements that (re)create ``model``'s capture triggers."""
    table = qn(model._meta.db_table)
    kind = "int" if integer_key(model) else "other"
    args = ", ".join(
        _literal(v) for v in (model_label(model), model._meta.pk.column, channel, kind)
    )
    statements = []
    for suffix, event, referencing in _TRIGGERS:
        name = qn(TRIGGER_PREFIX + suffix)
        statements.append(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        statements.append(
            f"CREATE TRIGGER {name} AFTER {event} ON {table} {referencing} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}({args})"
        )
    return statements


def integer_key(model: type[models.Model]) -> bool:
    """Whether the primary key is an integer (through a one-to-one parent link too)."""
    field = model._meta.pk
    while field.is_relation:
        field = field.target_field
    return isinstance(field, models.IntegerField)


def drop_sql(table: str, qn) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {qn(TRIGGER_PREFIX + suffix)} ON {qn(table)}"
        for suffix, _, _ in _TRIGGERS
    ]


def captured_models(labels: Iterable[str]) -> list[type[models.Model]]:
    return [apps.get_model(label) for label in sorted(labels)]


def installed_tables(using: str) -> set[str]:
    """Tables of the current schema search path that carry pushy's triggers."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT c.relname FROM pg_trigger t "
            "JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname LIKE %s AND pg_table_is_visible(c.oid)",
            [TRIGGER_PREFIX + "%"],
        )
        return {row[0] for row in cursor.fetchall()}


def existing_tables(using: str, tables: Iterable[str]) -> set[str]:
    """Those of ``tables`` that exist on the current schema search path."""
    qn = connections[using].ops.quote_name
    names = sorted(set(tables))
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT name FROM unnest(%s::text[], %s::text[]) AS t (name, quoted) "
            "WHERE to_regclass(quoted) IS NOT NULL",
            [names, [qn(name) for name in names]],
        )
        return {row[0] for row in cursor.fetchall()}


def install(models_: Iterable[type[models.Model]], using: str) -> list[str]:
    """Create (or replace) the function and ``models_``' triggers; their labels.

    A model whose table does not exist (renamed or dropped outside ``migrate``)
    is skipped and logged: one missing table must not stop the others' triggers,
    nor ``migrate``.
    """
    models_ = list(models_)
    present = existing_tables(using, [m._meta.db_table for m in models_])
    channel = notify_channel()
    qn = connections[using].ops.quote_name
    done = []
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute(FUNCTION_SQL)
        for model in models_:
            if model._meta.db_table not in present:
                logger.warning(
                    "pushy capture triggers not installed on %s: its table %s does "
                    "not exist (run manage.py migrate, or rename it back)",
                    model_label(model),
                    model._meta.db_table,
                )
                continue
            for statement in trigger_sql(model, channel, qn):
                cursor.execute(statement)
            done.append(model_label(model))
    if done:
        logger.info("pushy capture triggers installed on %s", ", ".join(done))
    return done


def remove(tables: Iterable[str], using: str) -> list[str]:
    """Drop pushy's triggers from ``tables``; the tables."""
    qn = connections[using].ops.quote_name
    done = sorted(tables)
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        for table in done:
            for statement in drop_sql(table, qn):
                cursor.execute(statement)
    return done


def sync(using: str, labels: Iterable[str]) -> tuple[list[str], list[str]]:
    """Triggers on exactly the tables of ``labels``: (installed, removed).

    A label missing from ``installed`` has no table (``install`` logged it).
    """
    wanted = captured_models(labels)
    wanted_tables = {m._meta.db_table for m in wanted}
    stale = installed_tables(using) - wanted_tables
    removed = remove(stale, using) if stale else []
    installed = install(wanted, using) if wanted else []
    return installed, removed


def install_after_migrate(
    sender: Any, using: str = "default", apps: Any = None, **kwargs: Any
) -> None:
    """post_migrate: (re)install the triggers of the migrated app's captured models.

    So ``migrate`` keeps them in place, also on a table a migration rebuilt, and a
    test database gets them when it is created. Removing triggers of models no
    longer captured is ``manage.py pushy_triggers``'s job.
    """
    labels = captured_labels()
    if not labels or using != capture_alias() or not is_postgresql(using):
        return
    mine = [
        model
        for model in sender.get_models()
        if model._meta.label_lower in labels
        and router.allow_migrate_model(using, model)
    ]
    if mine:
        install(mine, using)
