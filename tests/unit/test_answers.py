"""Answer rules: when a 2xx is a failure (JSON-RPC), what a 400 or a 200 really means, where the result is.

The engine runs real plans against a fake Caller that answers as the systems do (the unit-test
seam of `engine.ports`); the HTTP side of refusals handed to a step is in test_sessions.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from onceflow_runner.contract.plan import StepPlan
from onceflow_runner.engine.core import Engine
from onceflow_runner.engine.ports import Response
from onceflow_runner.errors import InvalidRecord, RejectedByTarget, TransientFailure
from tests.unit.test_entities_and_engine import META, RecordingEvents, plan

JSONRPC_RULES = [
    {"when": "has(response.error) && response.error != null && response.error.code == -32000", "outcome": "Retry",
     "message": "response.error.message"},
    {"when": "has(response.error) && response.error != null", "outcome": "Failed", "message": "response.error.message"},
]  # fmt: skip


class AnsweringCaller:
    """Answers every request with one Response; records what it was asked to accept."""

    def __init__(self, response: Response) -> None:
        self.response = response
        self.asked: list[dict[str, Any]] = []

    async def request(self, connector: str, method: str, path: str, **kw: Any) -> Response:
        self.asked.append({"path": path, **kw})
        return self.response


def step(kind: str = "call", **request: Any) -> StepPlan:
    block = {"connector": "erp", "method": "POST", "path": "'/jsonrpc'", **request}
    return StepPlan.model_validate({"name": "create", "kind": kind, "request": block})


async def run(s: StepPlan, response: Response) -> str:
    """Run the step, then a filter that reads what it bound; return the outcome's kind."""
    later = StepPlan.model_validate({"name": "check", "kind": "filter", "condition": "steps.create != 'unset'"})
    outcome = await Engine(plan(s, later), AnsweringCaller(response), RecordingEvents()).run({"tax": "1"}, META)
    return outcome.kind


@pytest.mark.parametrize(
    "body",
    [
        {"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "Invalid params: name is required"}},
        {"id": 1, "result": None, "error": {"code": 200, "message": "Invalid params: name is required"}},
    ],
    ids=["json-rpc-2.0", "json-rpc-1.0"],
)
async def test_a_jsonrpc_error_on_http_200_is_the_records_failure_with_the_systems_message(body: Any) -> None:
    with pytest.raises(RejectedByTarget) as failed:
        await run(step(answers=JSONRPC_RULES), Response(200, body))
    assert "Invalid params: name is required" in str(failed.value)
    assert failed.value.step == "create"


async def test_a_jsonrpc_error_the_rules_call_transient_is_retried() -> None:
    body = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "database is locked"}}
    with pytest.raises(TransientFailure, match="database is locked"):
        await run(step(answers=JSONRPC_RULES), Response(200, body))


@pytest.mark.parametrize(
    "body", [{"jsonrpc": "2.0", "id": 1, "result": 42}, {"id": 1, "result": 42, "error": None}], ids=["2.0", "1.0"]
)
async def test_a_jsonrpc_result_is_what_the_step_binds(body: Any) -> None:
    later = StepPlan.model_validate({"name": "check", "kind": "filter", "condition": "steps.create == 42"})
    caller = AnsweringCaller(Response(200, body))
    engine = Engine(plan(step(answers=JSONRPC_RULES, result="response.result"), later), caller, RecordingEvents())
    outcome = await engine.run({"tax": "1"}, META)
    assert outcome.kind == "completed"
    assert caller.asked[0]["answer_refusals"] is True


async def test_a_400_the_rules_call_already_exists_is_the_effect_already_there() -> None:
    rules = [{"when": "status == 400 && response.code == 'DUPLICATE'", "outcome": "AlreadyExists"}]
    later = StepPlan.model_validate(
        {"name": "check", "kind": "filter", "condition": "steps.create.code == 'DUPLICATE'"}
    )
    caller = AnsweringCaller(Response(400, {"code": "DUPLICATE", "message": "exists"}))
    outcome = await Engine(plan(step(answers=rules), later), caller, RecordingEvents()).run({"tax": "1"}, META)
    assert outcome.kind == "completed"


async def test_a_400_no_rule_claims_stays_the_records_failure_with_the_targets_words() -> None:
    rules = [{"when": "status == 400 && response.code == 'DUPLICATE'", "outcome": "AlreadyExists"}]
    with pytest.raises(RejectedByTarget, match="refused POST /jsonrpc with 400: bad vat") as failed:
        await run(step(answers=rules), Response(400, {"message": "bad vat"}))
    assert failed.value.status == 400


async def test_a_200_with_an_empty_list_the_rules_call_not_found_binds_null_in_a_lookup() -> None:
    rules = [{"when": "status == 200 && size(response.value) == 0", "outcome": "NotFound"}]
    lookup = step("lookup", method="GET", path="'/odata/items'", answers=rules, not_found="Continue")
    later = StepPlan.model_validate({"name": "check", "kind": "filter", "condition": "steps.create == null"})
    engine = Engine(plan(lookup, later), AnsweringCaller(Response(200, {"value": []})), RecordingEvents())
    assert (await engine.run({"tax": "1"}, META)).kind == "completed"


async def test_step_headers_are_built_per_record_and_a_line_break_fails_the_record() -> None:
    s = step(headers={"If-Match": "input.etag", "X-Company": "'ACME'"})
    caller = AnsweringCaller(Response(200, {}))
    await Engine(plan(s), caller, RecordingEvents()).run({"tax": "1", "etag": 'W/"7"'}, META)
    assert caller.asked[0]["headers"]["If-Match"] == 'W/"7"'
    assert caller.asked[0]["headers"]["X-Company"] == "ACME"
    with pytest.raises(InvalidRecord, match="header If-Match: the value holds a line break"):
        await Engine(plan(s), caller, RecordingEvents()).run({"tax": "1", "etag": "x\r\nX-Evil: 1"}, META)


def test_a_plan_setting_a_credential_or_connection_header_is_refused() -> None:
    with pytest.raises(ValueError, match="carries credentials"):
        step(headers={"authorization": "'x'"})
    with pytest.raises(ValueError, match="belongs to the HTTP connection"):
        step(headers={"Transfer-Encoding": "'chunked'"})


async def test_dedupe_reads_candidates_from_a_jsonrpc_result() -> None:
    # Odoo's search_read over JSON-RPC: the partners are in response.result, HTTP 200 either way.
    body = {"jsonrpc": "2.0", "id": 1, "result": [{"name": "Acme GmbH", "tax_id": "DE1", "postal_code": "10115"}]}
    dedupe = step(
        "dedupe",
        method="GET",
        path="'/jsonrpc'",
        answers=JSONRPC_RULES,
        result="response.result",
        candidates="response",
    )
    mapped = StepPlan.model_validate(
        {"name": "canonical", "kind": "map", "map": {"fields": {"name": "input.name", "tax_id": "input.tax"}}}
    )
    engine = Engine(plan(mapped, dedupe), AnsweringCaller(Response(200, body)), RecordingEvents())
    outcome = await engine.run({"tax": "DE1", "name": "Acme"}, META)
    assert outcome.kind == "parked"
    assert outcome.candidates[0]["candidate"]["name"] == "Acme GmbH"


async def test_dedupe_fails_the_record_with_the_systems_message_on_a_jsonrpc_error() -> None:
    body = {"jsonrpc": "2.0", "id": 1, "error": {"code": 200, "message": "Invalid field 'vat' on model 'res.partner'"}}
    dedupe = step("dedupe", method="GET", path="'/jsonrpc'", answers=JSONRPC_RULES, candidates="response")
    with pytest.raises(RejectedByTarget, match="Invalid field 'vat'"):
        await Engine(plan(dedupe), AnsweringCaller(Response(200, body)), RecordingEvents()).run({"tax": "1"}, META)


@pytest.mark.parametrize("value", ["ACME\x0bGmbH", "ACME\x1fGmbH", "ACME\x7fGmbH", "ACME\x01"])
async def test_a_header_value_with_a_control_character_fails_the_record_naming_the_header(value: str) -> None:
    """A vertical tab or unit separator from a spreadsheet export, mapped into a header.

    Only CR, LF and NUL were refused here; aiohttp refuses every control character but the tab
    with a bare ValueError ("Potential header injection attack"), which no classification knew:
    not the record's permanent failure naming the header that it is.
    """
    s = step(headers={"X-Company": "input.company"})
    with pytest.raises(InvalidRecord, match="header X-Company: the value holds a control character"):
        await Engine(plan(s), AnsweringCaller(Response(200, {})), RecordingEvents()).run(
            {"tax": "1", "company": value}, META
        )


async def test_a_header_value_with_a_tab_or_non_ascii_letters_is_sent() -> None:
    s = step(headers={"X-Company": "input.company"})
    caller = AnsweringCaller(Response(200, {}))
    await Engine(plan(s), caller, RecordingEvents()).run({"tax": "1", "company": "Müller\tGmbH"}, META)
    assert caller.asked[0]["headers"]["X-Company"] == "Müller\tGmbH"
