"""Request paths as people write them: a literal path, or a template with `{expression}` placeholders.

Why: a step's `path` is CEL, so a literal path needed CEL's quotes inside YAML's
(`path: '"/api/resource/Customer"'`), and the plain form failed with a parser error. A CEL
expression never starts with `/`, so a path that does is read as a *path template*: literal text
with `{expression}` placeholders, e.g. `/api/resource/Customer/{record.name}`. The operator
compiles it into the CEL the runner already runs (`"/api/resource/Customer/" +
pathSegment(record.name)`), so the plan contract does not change, and every placeholder's value is
percent-encoded as one path segment: a value holding `/`, `?`, `#` or `%` never adds a segment,
a query or a fragment. `{{` and `}}` stand for literal braces; a placeholder holds no braces.

A SyncPolicy's reconcile paths follow the same grammar with no placeholders (a drift check lists
every record, so there is no record to read): `{{`/`}}` for braces, the rest taken as written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import cel

__all__ = [
    "PATH_VARIABLES",
    "PathTemplateError",
    "Placeholder",
    "literal_hint",
    "literal_path",
    "parse_path_template",
    "path_template_cel",
    "reconcile_path_problems",
    "request_path_cel",
    "request_path_problems",
]

#: The variables a request path can read (the runner's context, engine/core.py; `response` is not
#: there yet when the path is built).
PATH_VARIABLES = ("input", "record", "steps", "meta", "policy")
_DOT_SEGMENTS = {".", ".."}
_BARE_WORDS = re.compile(r"^[A-Za-z0-9_./ -]+$")


class PathTemplateError(ValueError):
    """A path template that cannot be read; the message says where and what to write instead."""


@dataclass(frozen=True)
class Placeholder:
    """One `{expression}` of a template: CEL whose value becomes one percent-encoded path segment."""

    expression: str


#: A template, in order: literal text (braces already unescaped) and placeholders.
Parts = tuple[str | Placeholder, ...]


def parse_path_template(text: str) -> Parts:
    """Split a template into literal text and placeholders; raise PathTemplateError when malformed."""
    parts: list[str | Placeholder] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "{" and text.startswith("{{", i):
            literal.append("{")
            i += 2
        elif char == "}" and text.startswith("}}", i):
            literal.append("}")
            i += 2
        elif char == "}":
            raise PathTemplateError(
                f"the '}}' at character {i + 1} closes no placeholder; write '}}}}' for a literal brace"
            )
        elif char == "{":
            end = text.find("}", i + 1)
            inner_open = text.find("{", i + 1)
            if end == -1:
                raise PathTemplateError(
                    f"the '{{' at character {i + 1} has no closing '}}'; write '{{{{' for a literal brace"
                )
            if inner_open != -1 and inner_open < end:
                raise PathTemplateError(
                    f"the placeholder at character {i + 1} holds a '{{'; a placeholder is one CEL expression "
                    "without braces (build maps or longer paths with a CEL path instead)"
                )
            expression = text[i + 1 : end].strip()
            if not expression:
                raise PathTemplateError(
                    f"the placeholder at character {i + 1} is empty; put a CEL expression in it, "
                    "e.g. {record.name}, or write '{{}}' for literal braces"
                )
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Placeholder(expression))
            i = end + 1
        else:
            literal.append(char)
            i += 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def _cel_string(text: str) -> str:
    """A CEL string literal with the value `text` (JSON's escapes are all valid CEL escapes)."""
    return json.dumps(text, ensure_ascii=False)


def path_template_cel(parts: Parts) -> str:
    """The CEL the runner evaluates for a parsed template: literals joined with pathSegment(value)."""
    pieces = [
        f"pathSegment({part.expression})" if isinstance(part, Placeholder) else _cel_string(part) for part in parts
    ]
    return " + ".join(pieces) or '""'


def request_path_cel(path: str) -> str:
    """A step's `path` as the CEL the plan carries: a template (starts with /) compiled, CEL as written.

    A malformed template is returned unchanged; `request_path_problems` reports it and the planner
    refuses the spec before any plan is stored.
    """
    if not path.startswith("/"):
        return path
    try:
        return path_template_cel(parse_path_template(path))
    except PathTemplateError:
        return path


def literal_path(text: str) -> str:
    """A reconcile path as the drift check requests it: `{{`/`}}` unescaped; placeholders refused."""
    parts = parse_path_template(text)
    for part in parts:
        if isinstance(part, Placeholder):
            raise PathTemplateError(
                f"{{{part.expression}}} is a placeholder, but a reconcile path lists every record and has no "
                "record to read; write the path literally ('{{' and '}}' for literal braces)"
            )
    return "".join(str(part) for part in parts)


def _literal_problem(text: str, *, query_allowed: bool) -> str | None:
    """What the runner would refuse in a path's literal text, said before a record meets it."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in text) or "\\" in text:
        return "holds a control character or a backslash, which a request path cannot carry"
    if "#" in text:
        return "holds '#'; a request path has no fragment"
    path, _, _ = text.partition("?")
    if "?" in text and not query_allowed:
        return "holds '?'; put query parameters in the step's query block (name: CEL expression)"
    if "//" in path:
        return "holds an empty segment ('//'), which servers read as another host or path"
    if any(segment in _DOT_SEGMENTS for segment in path.split("/")):
        return "holds a dot segment ('.' or '..'); name the resource directly"
    return None


def _compile_problem(source: str) -> str | None:
    try:
        cel.compile(source)
    except ValueError as exc:
        return str(exc).split("\n", 1)[0].split(": ", 1)[-1]
    return None


def request_path_problems(field: str, path: str) -> Iterator[tuple[str, str]]:
    """Yield (field, message) for a step's `path` that cannot work, template or CEL.

    A template's own problems (braces, literal text the runner refuses, placeholders that do not
    compile) are named here; a CEL path that compiles but reads no variable the runner provides
    (`api/resource/Customer` is a division of three unknown names) gets the literal form as a hint.
    CEL that does not compile is reported with the other expressions (see `literal_hint`).
    """
    if not path.startswith("/"):
        if _compile_problem(path) is None:
            unknown = sorted(set(cel.compile(path).variables()) - set(PATH_VARIABLES))
            if unknown:
                names = ", ".join(unknown)
                hint = f"write /{path.strip()}" if _BARE_WORDS.match(path) else "start a literal path with /"
                yield (
                    field,
                    f"reads {names}, which a path cannot read (it sees {', '.join(PATH_VARIABLES)}); "
                    f"a path that starts with / is literal text with {{expression}} placeholders: {hint}",
                )
        return
    try:
        parts = parse_path_template(path)
    except PathTemplateError as exc:
        yield field, f"path template {path[:200]!r}: {exc}"
        return
    literal = "".join(part if isinstance(part, str) else "x" for part in parts)
    why = _literal_problem(literal, query_allowed=False)
    if why:
        yield field, f"path template {path[:200]!r} {why}"
    for part in parts:
        if isinstance(part, Placeholder):
            detail = _compile_problem(part.expression)
            if detail is not None:
                yield field, f"placeholder {{{part.expression}}} does not compile as CEL ({detail}); fix the expression"
                continue
            unknown = sorted(set(cel.compile(part.expression).variables()) - set(PATH_VARIABLES))
            if unknown:
                simple = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", part.expression)
                hint = f"did you mean {{record.{part.expression}}}?" if simple else "read record.<field>"
                yield (
                    field,
                    f"placeholder {{{part.expression}}} reads {', '.join(unknown)}, which a path cannot read (it "
                    f"sees {', '.join(PATH_VARIABLES)}); {hint}",
                )


def reconcile_path_problems(field: str, path: str) -> Iterator[tuple[str, str]]:
    """Yield (field, message) for a SyncPolicy reconcile path that cannot be requested."""
    try:
        text = literal_path(path)
    except PathTemplateError as exc:
        yield field, f"path {path[:200]!r}: {exc}"
        return
    why = _literal_problem(text, query_allowed=True)
    if why:
        yield field, f"path {path[:200]!r} {why}"


def literal_hint(field: str, source: str) -> str:
    """A hint for CEL that does not compile and looks like bare literal text ("" when it does not).

    A path field given a full URL is told to drop scheme and host; another field given `/...` or
    `http...` is told that CEL strings are quoted.
    """
    text = source.strip()
    if not (text.startswith("/") or text.lower().startswith("http")):
        return ""
    if field.endswith(".path") and text.lower().startswith(("http://", "https://")):
        relative = urlsplit(text).path or "/"
        return (
            f"; a path is relative to the Connector's baseURL: write only the path, e.g. {relative} "
            "(literal text with {expression} placeholders)"
        )
    return f"; it looks like literal text, and CEL strings are quoted: write '{_cel_string(text)}'"
