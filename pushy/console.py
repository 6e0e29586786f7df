"""Making a long-running command's state lines visible, whatever LOGGING says.

``runpushy`` and ``pushy_capture`` report their state (serving, subscribed,
active, standing by) through logging. A project whose ``LOGGING`` says nothing
about pushy would hide those lines, so the commands give the logger a handler
and the INFO level when it has neither; a project that configures it wins.
"""

from __future__ import annotations

import logging


def show_info(logger_name: str) -> None:
    """Print ``logger_name``'s INFO lines to stderr unless LOGGING handles them."""
    target = logging.getLogger(logger_name)
    if not target.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        target.addHandler(handler)
    if target.getEffectiveLevel() > logging.INFO:
        target.setLevel(logging.INFO)
