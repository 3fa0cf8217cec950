"""The numbers a client sends (UI fields or raw API JSON), checked before any work: one rule for every field, and
messages of bounded size whatever was sent (NaN, ±Infinity, None, text, lists, huge values)."""

from __future__ import annotations

import math
import numbers

SHOWN_CHARS = 40  # at most this much of an offending value is echoed back


def shown(value) -> str:
    """repr(value), cut to SHOWN_CHARS characters."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def listed(values, limit: int, last: bool = False) -> str:
    """'0, 1, 2 …' (or '0, 1, 2 … 29' with `last`): at most `limit` values of a long list, for labels and messages."""
    values = list(values)
    text = ", ".join(map(str, values[:limit]))
    if len(values) > limit:
        text += f" … {values[-1]}" if last else " …"
    return text


def _bounds(low, high, low_open: bool, high_open: bool) -> str:
    """'in [0, 1]', 'in (0, 1)', '≥ 0' …: the valid range, for messages."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '≥'} {low}"
    return f"{'<' if high_open else '≤'} {high}" if high is not None else "finite"


def number(value, name: str, low=None, high=None, *, integer: bool = False, optional: bool = False,
           low_open: bool = False, high_open: bool = False):
    """`value` as a float (an int with `integer`), or None when `optional` and nothing was given; a ValueError
    naming `name` and its range otherwise. Strings are parsed ("0.4"), booleans and other types are refused."""
    kind = "a whole number" if integer else "a number"
    bounds = _bounds(low, high, low_open, high_open)
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise ValueError(f"{name} is missing: give {kind} {bounds}")
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise ValueError(f"{name} must be {kind} {bounds}, got {type(value).__name__} {shown(value)}")
    try:
        parsed = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be {kind} {bounds}, got {shown(value)}") from None
    if not math.isfinite(parsed) or (integer and parsed != int(parsed)):
        raise ValueError(f"{name} must be {kind} {bounds}, got {shown(value)}")
    too_low = low is not None and (parsed <= low if low_open else parsed < low)
    too_high = high is not None and (parsed >= high if high_open else parsed > high)
    if too_low or too_high:
        raise ValueError(f"{name} must be {bounds}, got {shown(value)}")
    return int(parsed) if integer else parsed


def text_value(value, name: str, max_chars: int) -> str | None:
    """`value` as text of at most `max_chars` characters, None when nothing (or only blanks) was given; a ValueError
    naming `name` for another type or a longer text."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {type(value).__name__} {shown(value)}")
    if len(value) > max_chars:
        raise ValueError(f"{name} has {len(value):,} characters; the limit is {max_chars}")
    return value


def flag(value, name: str) -> bool:
    """`value` as true or false; a ValueError naming `name` for anything else (1, "yes", None …)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {shown(value)}")
    return value
