"""Parse Go-style durations (500ms, 30s, 1m30s), the form the onceflow.io API uses.

The API keeps Go's units (its CRD fields are read by Go tools too); the CLI also takes days
(`--older-than 1d`), which people reach for when they ask about exceptions.
"""

from __future__ import annotations

import re

__all__ = ["parse_duration"]

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_PART_WITH_DAYS = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, *, days: bool = False) -> float:
    """Return the duration in seconds; raise ValueError naming the text when it is not one.

    With `days`, `d` (24h) is a unit too: `1d`, `2d12h`.
    """
    parts = (_PART_WITH_DAYS if days else _PART).findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        examples = "30m, 24h, 1d or 2d12h" if days else "500ms, 30s, 5m or 1h30m"
        raise ValueError(f"{text!r} is not a duration such as {examples}")
    return sum(float(n) * _SECONDS[u] for n, u in parts)
