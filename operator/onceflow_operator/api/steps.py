"""The steps of an Integration: one small, single-purpose block each, with its logic in CEL.

Each step is exactly one of validate, map, filter, lookup, dedupe, call, publish, approve or
sendEdi. A new
kind is a model here, one entry in `STEP_KINDS`, its field on `Step` and its clause in the
exactly-one rule (see docs/architecture.md for the rest of the path).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from onceflow_operator.api._base import (
    DNS_LABEL,
    IDENTIFIER,
    ApiModel,
    cel_rules,
)
from onceflow_operator.api.types import Cel, Entity, FieldPath, HeaderExpressions, Paging, RequestPath
from onceflow_runner.contract.plan import PROTECTED_FIELDS

__all__ = [
    "STEP_KINDS",
    "AnswerRule",
    "ApproveStep",
    "CallStep",
    "DedupeStep",
    "FilterStep",
    "HttpMethod",
    "LookupStep",
    "MapStep",
    "PublishStep",
    "ResponseHandling",
    "RuleCheck",
    "SendEdiStep",
    "Step",
    "SuggestedFix",
    "ValidateStep",
]

STEP_KINDS = ("validate", "map", "filter", "lookup", "dedupe", "call", "publish", "approve", "sendEdi")
#: The X12 documents a `sendEdi` step builds (see docs/edi.md).
EdiDocument = Literal["855", "856", "810"]
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class SuggestedFix(ApiModel):
    """A correction offered to the person reviewing the exception; shown, never applied on its own."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                f"!self.field.matches('{PROTECTED_FIELDS.pattern}')",
                "price and credit fields are never changed by a suggestion; leave them to the reviewer",
            ),
        )
    }

    field: str = Field(
        description="Dot path into the received payload to change, e.g. data.address.country.",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        max_length=253,
    )
    value: Cel = Field(description="CEL over `input`, `record` and `meta` giving the proposed value.")


class RuleCheck(ApiModel):
    """A CEL rule a record must satisfy, with the message an operator will read."""

    expression: Cel = Field(description="CEL expression over `record` (and `input`, `meta`) that must be true.")
    message: str = Field(
        description="What is wrong with the record when the rule fails, and what to do.", max_length=1024
    )
    suggest: SuggestedFix | None = Field(
        default=None, description="A correction to offer the reviewer when the rule fails (never applied by itself)."
    )


class ValidateStep(ApiModel):
    """Check the record against a canonical entity schema and CEL rules; failures become exceptions."""

    entity: Entity | None = Field(
        default=None, description="Canonical entity the record must be (checked field by field)."
    )
    rules: list[RuleCheck] = Field(default_factory=list, description="Extra CEL rules.", max_length=32)


class MapStep(ApiModel):
    """Build the next `record` from CEL expressions, one per target field."""

    fields: dict[str, Cel] = Field(description="Target field name -> CEL expression.", min_length=1, max_length=100)
    mode: Literal["Replace", "Merge"] = Field(
        default="Replace",
        description="Replace: the fields become the whole record. Merge: they are set on the current record.",
    )


class FilterStep(ApiModel):
    """Continue only when the condition holds; other records are acknowledged and audited as filtered."""

    condition: Cel = Field(description="CEL condition; false means the record stops here, successfully.")


class AnswerRule(ApiModel):
    """What one kind of answer means, when its status code does not say it (or says it wrongly)."""

    when: Cel = Field(
        description=(
            "CEL over `status` (the HTTP status), `response` (the JSON body) and `headers` (lowercase names), "
            "e.g. has(response.error) for JSON-RPC, or status == 400 && response.exc_type == 'DuplicateEntryError'."
        )
    )
    outcome: Literal["Failed", "Retry", "NotFound", "AlreadyExists", "Succeeded"] = Field(
        description=(
            "Failed: the record's permanent failure (exception queue, with message). Retry: a transient failure "
            "(redelivered with backoff). NotFound: as a 404 (lookup notFound decides). AlreadyExists: as a 409, "
            "the effect is already there. Succeeded: a result, whatever the status."
        )
    )
    message: Cel | None = Field(
        default=None,
        description="CEL giving the message for Failed and Retry, e.g. response.error.message; the status when empty.",
    )


class ResponseHandling(ApiModel):
    """How to read an answer: which answers are failures (first rule that holds wins) and where the result is.

    Why: RPC-style APIs (JSON-RPC 1.0/2.0, Odoo, many ERPs) answer HTTP 200 with an `error` member,
    and real APIs use status codes their own way (a 400 that means "already exists", a 200 with an
    empty list that means "not found"). Rules see every answer except transient ones (408, 425,
    429, 5xx, retried by the Connector) and credential refusals (401, 403, which hold the record
    and mark the Connector AuthFailed); an error status no rule claims stays the record's failure.
    """

    rules: list[AnswerRule] = Field(default_factory=list, description="Answer rules, in order.", max_length=16)
    result: Cel | None = Field(
        default=None,
        description=(
            "CEL over `response` giving what is bound to steps.<name> (and, for dedupe, what candidates reads "
            "as `response`), e.g. response.result for JSON-RPC. The whole body when empty."
        ),
    )


class LookupStep(ApiModel):
    """Call a Connector and bind its JSON answer to `steps.<name>` for later steps."""

    connector: str = Field(description="Name of a REST Connector.", pattern=DNS_LABEL, max_length=63)
    method: HttpMethod = Field(default="GET", description="HTTP method.")
    path: RequestPath = Field(
        description=(
            "Path under the Connector's baseURL. Starting with /, it is literal text with {expression} "
            "placeholders, e.g. /api/resource/Item/{record.sku}: each placeholder is CEL whose value is "
            "percent-encoded as one path segment ('{{' and '}}' are literal braces). Otherwise it is a CEL "
            "expression, e.g. \"/api/resource/Item/\" + pathSegment(record.sku). A path with '?', '#', "
            "'//', a dot segment or a scheme fails the record; query parameters go in query."
        )
    )
    query: dict[str, Cel] = Field(default_factory=dict, description="Query parameter -> CEL expression.", max_length=32)
    not_found: Literal["Fail", "Continue"] = Field(
        default="Continue", description="On 404: Continue binds null; Fail raises an exception."
    )
    paging: Paging | None = Field(
        default=None,
        description=(
            "Read every page of a list: steps.<name> becomes {data: the rows of all pages, pages, complete}; "
            "complete is false when maxPages stopped the reading. Query values see `page` (number, offset, "
            "size, cursor). Without it, one request and steps.<name> is the answer as it came."
        ),
    )
    rows: Cel = Field(
        default="response.data",
        description="With paging: CEL selecting the rows of one page from `response` (e.g. response.value for OData).",
    )
    headers: HeaderExpressions = Field(
        default_factory=dict,
        description=(
            "Header -> CEL giving its value for this record, sent with the Connector's headers, e.g. "
            "If-Match: steps.current.data.modified. Credentials and connection headers are refused."
        ),
    )
    response: ResponseHandling | None = Field(
        default=None, description="Which answers are failures and where the result is (RPC-style APIs)."
    )


class DedupeStep(ApiModel):
    """Find existing records that match by the SyncPolicy's identity rules; matches go to approval."""

    connector: str = Field(description="Name of a REST Connector to search.", pattern=DNS_LABEL, max_length=63)
    path: RequestPath = Field(
        description="Search path: a template starting with / (e.g. /api/resource/Customer) or CEL, as for lookup."
    )
    query: dict[str, Cel] = Field(default_factory=dict, description="Query parameter -> CEL expression.", max_length=32)
    candidates: Cel = Field(
        default="response.data", description="CEL expression selecting the candidate list from `response`."
    )
    fields: dict[FieldPath, FieldPath] = Field(
        default_factory=dict,
        description=(
            "Candidate field mapping, target field -> canonical field (dotted paths both sides, e.g. "
            "customer_name: name, addr.zip: address.postcode): each candidate row also gets the mapped values "
            "under their canonical names before the match rules compare it with the record, so no CEL reshaping "
            "of the candidate list is needed. Fields the mapping does not name are compared as they are. Each "
            "canonical field is written once: two target fields onto one, or one canonical field inside another, "
            "is refused."
        ),
        max_length=64,
    )
    on_match: Literal["Approve", "Skip", "Exception"] = Field(
        default="Approve",
        description="Approve parks the record for a person (merge or create); Skip acknowledges it.",
    )
    paging: Paging | None = Field(
        default=None,
        description=(
            "Search every page: candidates of all pages are matched. A search that reaches maxPages with rows "
            "left is never taken as 'no duplicate': the record is parked for a person. Query values see `page` "
            "(number, offset, size, cursor). Without it, only the first answer is searched."
        ),
    )
    headers: HeaderExpressions = Field(
        default_factory=dict,
        description=(
            "Header -> CEL giving its value for this record, sent with the Connector's headers, e.g. "
            "If-Match: steps.current.data.modified. Credentials and connection headers are refused."
        ),
    )
    response: ResponseHandling | None = Field(
        default=None, description="Which answers are failures and where the result is (RPC-style APIs)."
    )


class CallStep(ApiModel):
    """The side effect: call a Connector with an idempotency key derived from the business key."""

    connector: str = Field(description="Name of a REST Connector.", pattern=DNS_LABEL, max_length=63)
    method: HttpMethod = Field(default="POST", description="HTTP method.")
    path: RequestPath = Field(
        description="Path: a template starting with / (e.g. /api/resource/Customer/{record.name}) or CEL, "
        "as for lookup."
    )
    body: Cel | None = Field(
        default=None, description="CEL expression giving the JSON body; the current record when empty."
    )
    idempotency_key: Cel | None = Field(
        default=None,
        description="CEL expression for the Idempotency-Key header; the business key when empty.",
    )
    headers: HeaderExpressions = Field(
        default_factory=dict,
        description=(
            "Header -> CEL giving its value for this record, sent with the Connector's headers, e.g. "
            "If-Match: steps.current.data.modified. Credentials and connection headers are refused."
        ),
    )
    response: ResponseHandling | None = Field(
        default=None, description="Which answers are failures and where the result is (RPC-style APIs)."
    )


class PublishStep(ApiModel):
    """Publish a canonical CloudEvent, e.g. io.onceflow.customer.created."""

    entity: Entity = Field(description="Canonical entity of the event.")
    verb: str = Field(
        description="Event verb, e.g. created, updated, shipped.", pattern=r"^[a-z][a-z_]*$", max_length=32
    )
    data: Cel | None = Field(
        default=None, description="CEL expression giving the event data; the current record when empty."
    )


class ApproveStep(ApiModel):
    """Park the record in the exception queue until a person approves or rejects it."""

    reason: str = Field(description="Why a person must look, shown in the review queue.", max_length=1024)
    when: Cel | None = Field(
        default=None, description="CEL condition; the record is parked only when true. Always when empty."
    )


class SendEdiStep(ApiModel):
    """Send an X12 document built from the record to an EDI trading partner (a Connector of type EDI).

    The partner's EDI pod builds, checks, numbers and uploads it, once per business key.
    """

    connector: str = Field(
        description="EDI Connector of the partner; it must list the document in spec.edi.send.",
        pattern=DNS_LABEL,
        max_length=63,
    )
    document: EdiDocument = Field(description="855 PO acknowledgment, 856 ship notice or 810 invoice.")
    from_: Cel | None = Field(
        default=None,
        alias="from",
        description="CEL giving the document's source (a canonical order, shipment or invoice, see docs/edi.md); "
        "the current record when empty.",
    )


class Step(ApiModel):
    """One step of the workflow: a name and exactly one kind."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "[has(self.validate), has(self.map), has(self.filter), has(self.lookup), "
                "has(self.dedupe), has(self.call), has(self.publish), has(self.approve), has(self.sendEdi)]"
                ".filter(x, x).size() == 1",
                "each step sets exactly one of validate, map, filter, lookup, dedupe, call, publish, "
                "approve, sendEdi; split a step that does two things into two named steps",
            ),
        )
    }

    name: str = Field(
        description="Step name, unique in the workflow; a CEL identifier so later steps can read steps.<name>.",
        pattern=IDENTIFIER,
        max_length=63,
    )
    validate_: ValidateStep | None = Field(default=None, alias="validate", description="Validate the record.")
    map: MapStep | None = Field(default=None, description="Reshape the record.")
    filter: FilterStep | None = Field(default=None, description="Stop records that do not qualify.")
    lookup: LookupStep | None = Field(default=None, description="Fetch data from a Connector.")
    dedupe: DedupeStep | None = Field(default=None, description="Match against existing records.")
    call: CallStep | None = Field(default=None, description="Make the side effect.")
    publish: PublishStep | None = Field(default=None, description="Publish a canonical event.")
    approve: ApproveStep | None = Field(default=None, description="Wait for a person's decision.")
    send_edi: SendEdiStep | None = Field(
        default=None, alias="sendEdi", description="Send an X12 document to an EDI partner."
    )

    @property
    def kind(self) -> str:
        """The one step kind this step sets."""
        for kind in STEP_KINDS:
            attr = {"validate": "validate_", "sendEdi": "send_edi"}.get(kind, kind)
            if getattr(self, attr) is not None:
                return kind
        return ""
