"""CEL, compiled once per plan and evaluated per record.

Expressions see `input` (the decoded payload as received), `record` (the working record the
steps build), `steps` (results of earlier lookup, dedupe, call and map steps), `meta` (business
key, delivery id, event, source, revision), `policy` (the SyncPolicy's entity and tolerances,
e.g. `policy.priceDeviationPercent`) and, where a step says so, `response`.

Functions beyond standard CEL live in `engine.functions` (string and encoding helpers). Among
them `pathSegment(value)` percent-encodes a value as one URL path segment (`/`, `?`, `#`, `%`
and every other reserved character encoded), so that a payload value interpolated into a
request path cannot add segments, a query or a fragment. Use it wherever record data enters a
`path`: `"/api/resource/Delivery Note/" + pathSegment(record.delivery_note)`.

Cost. Without a comprehension macro (`all`, `exists`, `exists_one`/`existsOne`, `map`, `filter`)
a CEL expression does work linear in its own length times the payload it reads, and payloads
are capped (1 MiB, nesting 64) before any CEL sees them: such expressions run inline. A
comprehension can be quadratic or worse (nested ones multiply, and the CEL library builds `map`
and `filter` results by copying: 8,000 numbers through `map` took 8.6 s on a developer laptop),
and the library holds the GIL, so a thread cannot bound it. Expressions that iterate therefore
run in a worker process the runner can kill at a deadline (`ports.IsolatedEvaluator`); the
operator refuses comprehensions nested deeper than `MAX_NESTED_ITERATIONS`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cel

from onceflow_runner.engine.functions import CEL_FUNCTIONS, STANDARD_FUNCTIONS, path_segment
from onceflow_runner.engine.ports import IsolatedEvaluator
from onceflow_runner.errors import InvalidRecord, PlanError

__all__ = [
    "CEL_FUNCTIONS",
    "COMPREHENSION_MACROS",
    "HEAVY_BYTES",
    "MAX_NESTED_ITERATIONS",
    "Shape",
    "bind",
    "compile_expression",
    "evaluate",
    "evaluate_bounded",
    "isolates",
    "iterates",
    "path_segment",
    "shape",
    "unknown_functions",
]

#: CEL's comprehension macros (cel-rust spells exists_one both ways): each iterates over a list or
#: map from the record, so its cost grows with the payload.
COMPREHENSION_MACROS = frozenset({"all", "exists", "exists_one", "existsOne", "map", "filter"})
#: A payload or Connector answer larger than this makes every later expression of the record run
#: isolated, whether it iterates or not: the CEL library converts what an expression reads into
#: its own values first, and 1 MiB of small values (`[{},{},...]`) takes over half a second to
#: convert, per expression, holding the GIL. Below it, conversion stays in the milliseconds.
HEAVY_BYTES = 16 * 1024
#: Deepest nesting of comprehensions the operator accepts: two levels cover "every line's every tax";
#: three over a 1 MiB payload is a cube no deadline-sized budget fits.
MAX_NESTED_ITERATIONS = 2


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> cel.Program:
    """Compile once; a plan whose CEL does not compile cannot run (the operator checks first)."""
    try:
        return cel.compile(source)
    except ValueError as exc:
        raise PlanError(f"CEL does not compile: {source!r}: {str(exc).splitlines()[0]}") from None


#: Names a call may use: standard CEL and ours (the library reports `base64.encode(x)` as `encode`).
_KNOWN_FUNCTIONS = STANDARD_FUNCTIONS | {name.rsplit(".", 1)[-1] for name in CEL_FUNCTIONS}
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def unknown_functions(source: str) -> list[str]:
    """Functions `source` calls that neither standard CEL nor Onceflow provides (operators aside).

    Why: the CEL library compiles a call to any name and fails only when it runs, on a record; the
    operator refuses such an expression up front (a typo like `lowercase()`, or cel-go's
    `base64.encode` spelled another way).
    """
    return sorted(
        name
        for name in compile_expression(source).functions()
        if _FUNCTION_NAME.fullmatch(name) and name not in _KNOWN_FUNCTIONS
    )


@lru_cache(maxsize=4096)
def _variables(source: str) -> frozenset[str]:
    return frozenset(compile_expression(source).variables())


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@lru_cache(maxsize=4096)
def _fields(source: str, variable: str) -> frozenset[str] | None:
    """The fields of a map variable that `source` reads as `variable.field`; None when it may read more.

    None (convert the whole value) whenever the variable appears other than as `variable.field`
    not followed by a call: alone (`size(input)`), indexed (`input["k"]`) or iterated
    (`input.all(...)`). A `variable.field` inside a string literal only adds a field: harmless.
    """
    fields: set[str] = set()
    for match in re.finditer(rf"(?<![.\w]){re.escape(variable)}(?!\w)", source):
        rest = source[match.end() :].lstrip()
        if not rest.startswith("."):
            return None
        name = _IDENT.match(rest[1:].lstrip())
        if name is None:
            return None
        after = rest[1:].lstrip()[name.end() :].lstrip()
        if after.startswith("("):
            return None
        fields.add(name.group())
    return frozenset(fields)


@lru_cache(maxsize=4096)
def _reads(sources: tuple[str, ...]) -> dict[str, frozenset[str] | None]:
    """Per variable these expressions read: the fields they read of it, or None for all of it."""
    out: dict[str, frozenset[str] | None] = {}
    for source in sources:
        for name in _variables(source):
            fields = _fields(source, name)
            if name in out:
                known = out[name]
                out[name] = None if known is None or fields is None else known | fields
            else:
                out[name] = fields
    return out


def bind(context: Mapping[str, Any], sources: Iterable[str]) -> cel.Context:
    """Convert to CEL only what these expressions read, once for all of them.

    Why: converting costs about 4 us per value (a 15-field `meta` about 60 us), paid per
    evaluation; a map step with several fields evaluates against one binding, and of a map
    variable read only as `variable.field` (`input.key`, `meta.integration`) only those fields
    are converted, so a large payload costs what an expression reads of it. A field the value
    lacks stays absent, so `has()` and a missing field read the same as over the whole value.
    """
    bound: dict[str, Any] = {}
    for name, fields in _reads(tuple(sources)).items():
        if name not in context:
            continue
        value = context[name]
        if fields is not None and isinstance(value, Mapping):
            value = {field: value[field] for field in fields if field in value}
        bound[name] = value
    return cel.Context(bound, CEL_FUNCTIONS)


@lru_cache(maxsize=4096)
def _constant(source: str) -> tuple[Any] | None:
    """The value of an expression that reads no variable (a literal path, say), computed once; else None.

    Why: a step's path is most often a literal (`"/api/resource/Customer"`), and binding an
    empty context to evaluate it again cost as much per record as a real expression. CEL is
    pure and our functions are too, so its value cannot change. An expression that fails is
    left to fail on each record as before (wrapped: a constant may be null).
    """
    if _variables(source):
        return None
    try:
        value = compile_expression(source).execute(cel.Context({}, CEL_FUNCTIONS))
    except Exception:  # evaluated again, and reported, per record by `evaluate`
        return None
    return None if isinstance(value, list | dict) else (value,)  # mutable values are rebuilt per record


def evaluate(source: str, context: Mapping[str, Any] | cel.Context, *, step: str, what: str) -> Any:
    """Evaluate `source`; a missing field or type error is the record's fault, named as such."""
    constant = _constant(source)
    if constant is not None:
        return constant[0]
    bound = context if isinstance(context, cel.Context) else bind(context, (source,))
    try:
        return compile_expression(source).execute(bound)
    except KeyError as exc:
        raise InvalidRecord(f"{what}: the record has no field {exc.args[0]!r} ({source})", step=step) from None
    except (ValueError, TypeError, RuntimeError, ArithmeticError) as exc:
        raise InvalidRecord(f"{what}: {_reason(exc)} ({source})", step=step) from None


def _reason(exc: Exception) -> str:
    """The first line of a CEL error; for one of our functions, just what the function said.

    The library wraps a function's ValueError as "Function 'f' error: Python function call failed:
    ValueError: <ours>. Check function arguments ... Python function 'f' failed: <ours>".
    """
    text = str(exc).splitlines()[0]
    marker = "ValueError: "
    if text.startswith("Function '") and marker in text:
        return text.split(marker, 1)[1].split(". Check function arguments", 1)[0]
    return text


@dataclass(frozen=True)
class Shape:
    """How an expression iterates: how many comprehension macros it has, and how deeply they nest."""

    comprehensions: int
    depth: int


_QUOTES = ('"""', "'''", '"', "'")


def _skip_string(source: str, i: int) -> int:
    """Index just past the string literal starting at `i` (after any r/b prefix), or len(source)."""
    raw = False
    while source[i] in "rRbB":
        raw = raw or source[i] in "rR"
        i += 1
    quote = next(q for q in _QUOTES if source.startswith(q, i))
    i += len(quote)
    while i < len(source):
        if not raw and source[i] == "\\":
            i += 2
        elif source.startswith(quote, i):
            return i + len(quote)
        else:
            i += 1
    return len(source)


def _string_start(source: str, i: int) -> bool:
    """True if a string literal (with an optional r/b prefix of up to two letters) starts at `i`."""
    j = i
    while j < len(source) and j - i < 2 and source[j] in "rRbB":
        j += 1
    if j > i and i > 0 and (source[i - 1].isalnum() or source[i - 1] == "_"):
        return False  # the prefix letters end an identifier such as `bar"`: not a prefix
    return j < len(source) and source[j] in "\"'"


@lru_cache(maxsize=4096)
def shape(source: str) -> Shape:
    """Count and nest the comprehension macros in `source`, reading it as CEL tokens.

    Why not ask the CEL library: it expands macros at parse time and reports only the functions
    they expand to (`_+_` for `map`), and an unused iteration variable leaves no trace. String
    literals and `//` comments are skipped, so `"a.all(" + x` does not count, and a quote or a
    parenthesis in a comment (`// don't`) cannot hide the code after it.
    """
    count = depth = 0
    opened: list[bool] = []  # per open parenthesis: did a macro call open it
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if _string_start(source, i):
            i = _skip_string(source, i)
            continue
        if source.startswith("//", i):  # a comment, to the end of its line (outside a string, `//` is nothing else)
            end = source.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if ch == ".":
            j = i + 1
            while j < n and source[j].isspace():
                j += 1
            k = j
            while k < n and (source[k].isalnum() or source[k] == "_"):
                k += 1
            name = source[j:k]
            while k < n and source[k].isspace():
                k += 1
            if name in COMPREHENSION_MACROS and k < n and source[k] == "(":
                count += 1
                opened.append(True)
                depth = max(depth, sum(opened))
                i = k + 1
                continue
            i = max(j, i + 1)
            continue
        if ch == "(":
            opened.append(False)
        elif ch == ")" and opened:
            opened.pop()
        i += 1
    return Shape(count, depth)


def iterates(source: str) -> bool:
    """True when the expression has a comprehension, so its cost is not bounded by the payload size alone."""
    return shape(source).comprehensions > 0


def isolates(source: str, *, isolated: IsolatedEvaluator | None, heavy: bool) -> bool:
    """True when `source` goes to `isolated`: it iterates, or the record is `heavy` (see `HEAVY_BYTES`).

    `isolated` None evaluates everything inline: for unit tests of the steps, never for records
    in a runner.
    """
    return isolated is not None and (heavy or iterates(source))


async def evaluate_bounded(
    source: str,
    context: Mapping[str, Any],
    *,
    step: str,
    what: str,
    isolated: IsolatedEvaluator | None,
    heavy: bool = False,
) -> Any:
    """Evaluate `source` in `isolated` under its deadline when `isolates` says so, else inline."""
    if isolated is None or not isolates(source, isolated=isolated, heavy=heavy):
        return evaluate(source, context, step=step, what=what)
    variables = {name: context[name] for name in _variables(source) if name in context}
    return await isolated.evaluate(source, variables, step=step, what=what)
