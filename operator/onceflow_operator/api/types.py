"""Value types every kind of the API shares: business entities, CEL expressions, request paths, durations."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from onceflow_operator.api._base import DURATION, cel_rules
from onceflow_runner.contract.headers import REFUSED_REQUEST_HEADERS

__all__ = [
    "ENTITIES",
    "HEADER_NAME_RULE",
    "LITERAL_PATH_PATTERN",
    "PATH_TEMPLATE_PATTERN",
    "Cel",
    "Duration",
    "Entity",
    "HeaderExpressions",
    "ReconcilePath",
    "RequestPath",
    "StaticHeaders",
]

Entity = Literal["customer", "item", "price", "order", "shipment", "invoice", "supplier"]
ENTITIES: tuple[str, ...] = Entity.__args__  # type: ignore[attr-defined]
#: A CEL expression; bounded so that the API server's CEL cost budget holds.
Cel = Annotated[str, Field(min_length=1, max_length=4096)]
Duration = Annotated[str, Field(pattern=DURATION, max_length=32)]

#: RE2 pattern of a well-formed path template: literal text, `{{`, `}}` and `{expression}`
#: placeholders without braces (compiler.paths parses it the same way; a test holds them together).
PATH_TEMPLATE_PATTERN = "^/([^{}]|[{][{]|[}][}]|[{][^{}]+[}])*$"
#: The same grammar without placeholders: a SyncPolicy's reconcile path.
LITERAL_PATH_PATTERN = "^/([^{}]|[{][{]|[}][}])*$"

#: A step's request path: a template when it starts with `/`, otherwise a CEL expression.
RequestPath = Annotated[
    str,
    Field(
        min_length=1,
        max_length=4096,
        json_schema_extra=cel_rules(
            (
                f"!self.startsWith('/') || self.matches('{PATH_TEMPLATE_PATTERN}')",
                "a path starting with / is literal text with {expression} placeholders: close every '{' "
                "with '}', keep braces out of placeholders, and write '{{' or '}}' for a literal brace",
            ),
        ),
    ),
]
#: A SyncPolicy's reconcile path: literal text (braces doubled), no placeholders.
ReconcilePath = Annotated[
    str,
    Field(
        pattern=r"^/[^\s]*$",
        max_length=1024,
        json_schema_extra=cel_rules(
            (
                f"self.matches('{LITERAL_PATH_PATTERN}')",
                "a reconcile path lists every record, so it has no {placeholder}: write it literally, "
                "with '{{' or '}}' for a literal brace",
            ),
        ),
    ),
]


#: The CRD rule behind `refused_request_header` (onceflow_runner.contract.headers): RE2 with (?i),
#: which both the API server and the offline validator evaluate.
_REFUSED_HEADERS_RE = "(?i)^(" + "|".join(sorted(REFUSED_REQUEST_HEADERS)) + "|proxy-.*)$"
HEADER_NAME_RULE = (
    f"self.all(k, k.matches('^[A-Za-z0-9!#$%&*+.^_`|~-]+$') && !k.matches('{_REFUSED_HEADERS_RE}'))",
    "a request header name must be an HTTP token and not one Onceflow or the HTTP client sets: "
    "credentials go in rest.auth (Authorization, Cookie), and connection headers (Host, Connection, "
    "Content-Length, Content-Type, Transfer-Encoding, ...), Idempotency-Key, traceparent and "
    "Onceflow-Origin are set by Onceflow",
)
#: Headers with literal values, e.g. {"Accept": "application/json", "X-Company": "ACME"}.
StaticHeaders = Annotated[
    dict[str, Annotated[str, Field(max_length=4096)]],
    Field(max_length=32, json_schema_extra=cel_rules(HEADER_NAME_RULE)),
]
#: Header name -> CEL giving its value for the record, e.g. {"If-Match": "steps.current.etag"}.
HeaderExpressions = Annotated[
    dict[str, Cel],
    Field(max_length=32, json_schema_extra=cel_rules(HEADER_NAME_RULE)),
]
