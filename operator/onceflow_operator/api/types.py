"""Value types every kind of the API shares: business entities, CEL expressions, request paths, durations."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from onceflow_operator.api._base import DURATION, ApiModel, cel_rules
from onceflow_runner.contract.headers import REFUSED_REQUEST_HEADERS

__all__ = [
    "ENTITIES",
    "HEADER_NAME_RULE",
    "LITERAL_PATH_PATTERN",
    "PATH_TEMPLATE_PATTERN",
    "Cel",
    "Duration",
    "Entity",
    "FieldPath",
    "HeaderExpressions",
    "Paging",
    "ReconcilePath",
    "RequestPath",
    "StaticHeaders",
]

Entity = Literal["customer", "item", "price", "order", "shipment", "invoice", "supplier"]
ENTITIES: tuple[str, ...] = Entity.__args__  # type: ignore[attr-defined]
#: A CEL expression; bounded so that the API server's CEL cost budget holds.
Cel = Annotated[str, Field(min_length=1, max_length=4096)]
Duration = Annotated[str, Field(pattern=DURATION, max_length=32)]
#: A field of a record by dotted path (`address.city`; a number steps into a list: `contacts.0.email`).
#: (`[.]`, not a backslash: the pattern also becomes a CEL string in the CRD, where `\.` is no escape.)
FieldPath = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*([.][A-Za-z0-9_]+)*$", max_length=128)]

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


_QUERY_PARAM = r"^[A-Za-z0-9_.$\[\]-]+$"


class Paging(ApiModel):
    """How a list or search is read page by page, until it ends or `maxPages` pages were read.

    The styles real systems use: Offset (ERPNext `limit_start`/`limit_page_length`, NetSuite
    `offset`/`limit`, OData `$skip`/`$top`), Page (a page number), Cursor (the answer names a token
    to send back), NextLink (the answer's body names the next URL, e.g. OData `@odata.nextLink`)
    and LinkHeader (RFC 8288 `Link: <...>; rel="next"`, as GitHub and Shopify answer). A next
    link must stay under the Connector's baseURL.
    """

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "(self.style in ['Cursor', 'NextLink']) == has(self.next)",
                "next is set for the Cursor and NextLink styles only: CEL over `response` (and `headers`) "
                "giving the next cursor or link, null or '' at the end",
            ),
        )
    }

    style: Literal["Offset", "Page", "Cursor", "NextLink", "LinkHeader"] = Field(
        default="Offset", description="How the target pages its lists."
    )
    page_size: int = Field(
        default=100,
        ge=1,
        le=10000,
        description=(
            "Rows asked for per page; at most the target's own maximum, since a page shorter than this ends "
            "an Offset or Page list."
        ),
    )
    size_param: str = Field(
        default="limit_page_length",
        max_length=64,
        pattern=r"^([A-Za-z0-9_.$\[\]-]+)?$",
        description="Query parameter carrying pageSize (e.g. limit, $top, per_page); empty when there is none.",
    )
    offset_param: str = Field(
        default="limit_start",
        max_length=64,
        pattern=_QUERY_PARAM,
        description="Offset style: query parameter carrying the rows to skip (e.g. offset, $skip).",
    )
    page_param: str = Field(
        default="page", max_length=64, pattern=_QUERY_PARAM, description="Page style: query parameter of the page."
    )
    first_page: int = Field(default=1, ge=0, le=1, description="Page style: number of the first page (0 or 1).")
    cursor_param: str = Field(
        default="cursor",
        max_length=64,
        pattern=_QUERY_PARAM,
        description="Cursor style: query parameter that sends the cursor back.",
    )
    next: Cel | None = Field(
        default=None,
        description=(
            "Cursor and NextLink styles: CEL over `response` (the body) and `headers` giving the next cursor or "
            "link, e.g. response.meta.next_cursor or response['@odata.nextLink']; null or '' ends the list."
        ),
    )
    max_pages: int = Field(
        default=50,
        ge=1,
        le=10000,
        description=(
            "Pages read at most; a read also stops once 64 MiB of answers arrived in all. A longer list is never "
            "treated as complete: a search that hits either cap holds the record for a person."
        ),
    )
