"""PRESENCE_NAME hooks for the presence tests."""

from __future__ import annotations

from typing import Any


def shouted(user: Any) -> str:
    """The user's first name in capitals, else the username."""
    return user.first_name.upper() or user.get_username()


def broken(user: Any) -> str:
    raise RuntimeError("this hook fails")
