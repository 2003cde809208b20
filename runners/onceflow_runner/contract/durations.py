"""Parse Go-style durations (500ms, 30s, 1m30s), the form the onceflow.io API uses."""

from __future__ import annotations

import re

__all__ = ["parse_duration"]

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise ValueError naming the text when it is not one."""
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration such as 500ms, 30s, 5m or 1h30m")
    return sum(float(n) * _SECONDS[u] for n, u in parts)
