"""NATS header names both planes use, defined once, and how their values are made safe.

NATS headers are one line each; `header_safe` is applied to any free text (an error message, a
business key) before it becomes a header value.
"""

from __future__ import annotations

__all__ = ["header_safe"]


def header_safe(text: str, limit: int = 1000) -> str:
    """NATS header values are one line."""
    return " ".join(str(text).split())[:limit]
