"""CEL functions beyond standard CEL: the string and encoding helpers real APIs make necessary.

Why: the CEL library (cel-rust's Python binding) ships the standard definitions only, without
the string and encoding extensions Kubernetes and cel-go offer. Pointed at real ERPs, a workflow
needs them: a session header is `"Session " + base64.encode(...)`, an ERPNext filter is
`json.encode([["tax_id", "=", record.tax_id]])`, an OData filter value is `url.encode(...)`, a
company code is `record.company.upperAscii()`. Names and semantics follow cel-go's `ext`
libraries (strings, encoders) where they exist, so expressions read the same as in Kubernetes:

    pathSegment(v)          v as one percent-encoded URL path segment
    base64.encode(b|s)      standard base64 (padded) of bytes, or of a string's UTF-8
    base64.decode(s)        bytes; padding optional
    base64url.encode(b|s)   URL-safe base64 without padding (RFC 4648 section 5, as JWTs use it)
    base64url.decode(s)     bytes; padding optional
    url.encode(v)           v percent-encoded as one query value (space as %20, every reserved char)
    json.encode(v)          compact JSON text of a CEL value (timestamps as RFC 3339)
    json.decode(s)          the value of a JSON text
    s.lowerAscii()  s.upperAscii()  s.trim()
    s.substring(start[, end])       code points, end exclusive; out of range fails the record
    s.split(sep[, limit])           limit < 0: all parts; 0: none; n: at most n parts
    list.join([sep])                a list of strings joined
    s.replace(old, new[, limit])    limit < 0: every occurrence
    s.indexOf(sub)                  code point index, or -1

A function given the wrong kind of value raises ValueError; the engine turns that into the
record's InvalidRecord naming the step and the expression. `CEL_FUNCTIONS` is registered with
every evaluation (`engine.expressions.bind`) and read by the operator's validation, so
`onceflow validate` refuses a call to a function that no runner has.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

__all__ = ["CEL_FUNCTIONS", "STANDARD_FUNCTIONS", "path_segment"]


def _text(value: Any, function: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{function}() takes a string, not {type(value).__name__}")
    return value


def _scalar_text(value: Any, function: str) -> str:
    """Strings as they are, numbers and booleans as CEL writes them; anything else is refused."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ValueError(f"{function}() takes a string or a number, not {type(value).__name__}")


def path_segment(value: Any) -> str:
    """CEL `pathSegment(value)`: the value as one percent-encoded URL path segment.

    Strings are encoded as they are, numbers and booleans as CEL writes them; null, lists and
    maps have no place in a path and fail the record (InvalidRecord, naming the step).
    """
    return quote(_scalar_text(value, "pathSegment"), safe="")


def _octets(value: Any, function: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise ValueError(f"{function}() takes bytes or a string, not {type(value).__name__}")


def _padded(text: str) -> str:
    return text + "=" * (-len(text) % 4)


def base64_encode(value: Any) -> str:
    """`base64.encode`: standard alphabet, padded."""
    return base64.b64encode(_octets(value, "base64.encode")).decode()


def base64_decode(value: Any) -> bytes:
    """`base64.decode`: standard alphabet; missing padding is tolerated, other characters are not."""
    try:
        return base64.b64decode(_padded(_text(value, "base64.decode")), validate=True)
    except binascii.Error:
        raise ValueError("base64.decode() was given text that is not base64") from None


def base64url_encode(value: Any) -> str:
    """`base64url.encode`: URL-safe alphabet without padding, as JWT and many API tokens use it."""
    return base64.urlsafe_b64encode(_octets(value, "base64url.encode")).decode().rstrip("=")


def base64url_decode(value: Any) -> bytes:
    """`base64url.decode`: URL-safe alphabet, padding optional."""
    text = _padded(_text(value, "base64url.decode"))
    if any(c in text for c in "+/"):
        raise ValueError("base64url.decode() was given standard base64 ('+' or '/'); use base64.decode")
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except binascii.Error:
        raise ValueError("base64url.decode() was given text that is not base64url") from None


def url_encode(value: Any) -> str:
    """`url.encode`: one query value, every character outside RFC 3986's unreserved set encoded."""
    return quote(_scalar_text(value, "url.encode"), safe="")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        stamp = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return stamp.isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, bytes):
        raise ValueError("json.encode() cannot write bytes; use base64.encode(value) first")
    raise ValueError(f"json.encode() cannot write a {type(value).__name__}")


def json_encode(value: Any) -> str:
    """`json.encode`: compact JSON, keys in the map's order, non-ASCII kept as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_jsonable, allow_nan=False)


def json_decode(value: Any) -> Any:
    """`json.decode`: the value of a JSON text (e.g. ERPNext's `_server_messages`)."""
    try:
        return json.loads(_text(value, "json.decode"))
    except ValueError as exc:
        raise ValueError(f"json.decode() was given text that is not JSON ({exc.args[0][:80]})") from None


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def lower_ascii(value: Any) -> str:
    """`s.lowerAscii()`: ASCII letters lowered; every other character kept (as cel-go does)."""
    return _text(value, "lowerAscii").translate(_ASCII_LOWER)


def upper_ascii(value: Any) -> str:
    """`s.upperAscii()`: ASCII letters raised; every other character kept."""
    return _text(value, "upperAscii").translate(_ASCII_UPPER)


def trim(value: Any) -> str:
    """`s.trim()`: leading and trailing whitespace removed."""
    return _text(value, "trim").strip()


def substring(value: Any, start: Any, end: Any = None) -> str:
    """`s.substring(start[, end])`: by code point; an index outside the string fails the record."""
    text = _text(value, "substring")
    stop = len(text) if end is None else end
    if not isinstance(start, int) or not isinstance(stop, int) or isinstance(start, bool):
        raise ValueError("substring() takes integer indexes")
    if not 0 <= start <= stop <= len(text):
        raise ValueError(f"substring({start}, {stop}) is outside a string of length {len(text)}")
    return text[start:stop]


def split(value: Any, separator: Any, limit: Any = -1) -> list[str]:
    """`s.split(sep[, limit])`: as cel-go: limit 0 gives no parts, a negative limit every part."""
    text, sep = _text(value, "split"), _text(separator, "split")
    if not isinstance(limit, int):
        raise ValueError("split() takes an integer limit")
    if limit == 0:
        return []
    if sep == "":
        parts = list(text)
        return parts if limit < 0 or limit >= len(parts) else [*parts[: limit - 1], "".join(parts[limit - 1 :])]
    return text.split(sep) if limit < 0 else text.split(sep, limit - 1)


def join(value: Any, separator: Any = "") -> str:
    """`list.join([sep])`: a list of strings joined (numbers must be converted with string() first)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("join() takes a list of strings; convert other values with string() first")
    return _text(separator, "join").join(value)


def replace(value: Any, old: Any, new: Any, limit: Any = -1) -> str:
    """`s.replace(old, new[, limit])`: a negative limit replaces every occurrence."""
    if not isinstance(limit, int):
        raise ValueError("replace() takes an integer limit")
    return _text(value, "replace").replace(_text(old, "replace"), _text(new, "replace"), limit)


def index_of(value: Any, sub: Any) -> int:
    """`s.indexOf(sub)`: the code point index of the first occurrence, or -1."""
    return _text(value, "indexOf").find(_text(sub, "indexOf"))


#: Functions every expression may call, beyond standard CEL (see the module docstring).
CEL_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "pathSegment": path_segment,
    "base64.encode": base64_encode,
    "base64.decode": base64_decode,
    "base64url.encode": base64url_encode,
    "base64url.decode": base64url_decode,
    "url.encode": url_encode,
    "json.encode": json_encode,
    "json.decode": json_decode,
    "lowerAscii": lower_ascii,
    "upperAscii": upper_ascii,
    "trim": trim,
    "substring": substring,
    "split": split,
    "join": join,
    "replace": replace,
    "indexOf": index_of,
}

#: Functions of standard CEL as the CEL library provides them (macros included: the library
#: reports some of them as functions). A call to any other name, or to one of `CEL_FUNCTIONS`,
#: is refused by the operator before a runner meets it.
STANDARD_FUNCTIONS = frozenset(
    {
        "size", "contains", "startsWith", "endsWith", "matches", "has", "all", "exists", "exists_one",
        "existsOne", "map", "filter", "max", "min", "int", "uint", "double", "string", "bytes", "bool",
        "type", "dyn", "duration", "timestamp", "getFullYear", "getMonth", "getDayOfYear",
        "getDayOfMonth", "getDate", "getDayOfWeek", "getHours", "getMinutes", "getSeconds",
        "getMilliseconds",
    }
)  # fmt: skip
