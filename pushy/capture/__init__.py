"""Change capture on PostgreSQL: triggers that NOTIFY, and the process that listens.

Signals see ``save()`` and ``delete()`` only. For models listed in ``CAPTURE``,
statement-level triggers send the primary keys of every inserted, updated and
deleted row through NOTIFY, whatever made the change (``QuerySet.update()``,
bulk writes, raw SQL, psql), and ``manage.py pushy_capture`` turns them into the
same updates the signals would have published.

Whether a model is captured is pushy/captured.py's answer, so the publishing
side never imports this package.
"""
