"""CEL, compiled once per plan and evaluated per record.

Expressions see `input` (the decoded payload as received), `record` (the working record the
steps build), `steps` (results of earlier lookup, dedupe, call and map steps), `meta` (business
key, delivery id, event, source, revision), `policy` (the SyncPolicy's entity and tolerances,
e.g. `policy.priceDeviationPercent`) and, where a step says so, `response`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import cel

from .errors import InvalidRecord, PlanError

__all__ = ["compile_expression", "evaluate"]


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> cel.Program:
    """Compile once; a plan whose CEL does not compile cannot run (the operator checks first)."""
    try:
        return cel.compile(source)
    except ValueError as exc:
        raise PlanError(f"CEL does not compile: {source!r}: {str(exc).splitlines()[0]}") from None


def evaluate(source: str, context: dict[str, Any], *, step: str, what: str) -> Any:
    """Evaluate `source`; a missing field or type error is the record's fault, named as such."""
    try:
        return compile_expression(source).execute(context)
    except KeyError as exc:
        raise InvalidRecord(
            f"{what}: the record has no field {exc.args[0]!r} ({source})", step=step
        ) from None
    except (ValueError, TypeError, RuntimeError, ArithmeticError) as exc:
        raise InvalidRecord(f"{what}: {str(exc).splitlines()[0]} ({source})", step=step) from None
