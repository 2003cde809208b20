"""CEL, compiled once per plan and evaluated per record.

Expressions see `input` (the decoded payload as received), `record` (the working record the
steps build), `steps` (results of earlier lookup, dedupe, call and map steps), `meta` (business
key, delivery id, event, source, revision), `policy` (the SyncPolicy's entity and tolerances,
e.g. `policy.priceDeviationPercent`) and, where a step says so, `response`.

Functions beyond standard CEL: `pathSegment(value)` percent-encodes a value as one URL path
segment (`/`, `?`, `#`, `%` and every other reserved character encoded), so that a payload value
interpolated into a request path cannot add segments, a query or a fragment. Use it wherever
record data enters a `path`: `"/api/resource/Delivery Note/" + pathSegment(record.delivery_note)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import cel

from onceflow_runner.errors import InvalidRecord, PlanError

__all__ = ["CEL_FUNCTIONS", "bind", "compile_expression", "evaluate", "path_segment"]


def path_segment(value: Any) -> str:
    """CEL `pathSegment(value)`: the value as one percent-encoded URL path segment.

    Strings are encoded as they are, numbers and booleans as CEL writes them; null, lists and
    maps have no place in a path and fail the record (InvalidRecord, naming the step).
    """
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        raise ValueError(f"pathSegment() takes a string or a number, not {type(value).__name__}")
    return quote(text, safe="")


#: Functions every expression may call, beyond standard CEL.
CEL_FUNCTIONS: dict[str, Callable[..., Any]] = {"pathSegment": path_segment}


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> cel.Program:
    """Compile once; a plan whose CEL does not compile cannot run (the operator checks first)."""
    try:
        return cel.compile(source)
    except ValueError as exc:
        raise PlanError(f"CEL does not compile: {source!r}: {str(exc).splitlines()[0]}") from None


@lru_cache(maxsize=4096)
def _variables(source: str) -> frozenset[str]:
    return frozenset(compile_expression(source).variables())


def bind(context: Mapping[str, Any], sources: Iterable[str]) -> cel.Context:
    """Convert to CEL only the variables these expressions read, once for all of them.

    Why: converting the whole context costs ~100 us per evaluation (measured in
    bench/runner_throughput.py); a map step with several fields evaluates against one binding.
    """
    names = frozenset().union(*(_variables(s) for s in sources))
    return cel.Context({name: context[name] for name in names if name in context}, CEL_FUNCTIONS)


def evaluate(source: str, context: Mapping[str, Any] | cel.Context, *, step: str, what: str) -> Any:
    """Evaluate `source`; a missing field or type error is the record's fault, named as such."""
    bound = context if isinstance(context, cel.Context) else bind(context, (source,))
    try:
        return compile_expression(source).execute(bound)
    except KeyError as exc:
        raise InvalidRecord(f"{what}: the record has no field {exc.args[0]!r} ({source})", step=step) from None
    except (ValueError, TypeError, RuntimeError, ArithmeticError) as exc:
        raise InvalidRecord(f"{what}: {str(exc).splitlines()[0]} ({source})", step=step) from None
