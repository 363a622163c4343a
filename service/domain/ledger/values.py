"""Checks of the values ledger records and reports are made of."""

from __future__ import annotations


def require_int(value: object, what: str) -> int:
    # bool is an int subclass; True as an amount is always a bug upstream.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    return value


def require_non_negative(value: object, what: str) -> int:
    number = require_int(value, what)
    if number < 0:
        raise ValueError(f"{what} must not be negative, got {number}")
    return number


def require_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def optional_text(value: object, what: str) -> str | None:
    return None if value is None else require_text(value, what)
