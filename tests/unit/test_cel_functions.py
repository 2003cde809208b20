"""The CEL string and encoding functions, as expressions call them (properties, not examples).

Each property goes through CEL itself (`engine.expressions.evaluate`), so what is proven is what
a workflow sees: the registration, the library's conversion of values both ways, and the
function. The operator's check that an expression calls only functions a runner has is here too.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onceflow_operator.compiler.validation import validate_manifest
from onceflow_runner.engine.expressions import evaluate, unknown_functions
from onceflow_runner.engine.functions import CEL_FUNCTIONS
from onceflow_runner.errors import InvalidRecord

PROPERTY = settings(deadline=None, max_examples=200)
#: Text CEL strings can hold (no lone surrogates, which are not Unicode scalar values).
texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60)


def cel(source: str, **variables: Any) -> Any:
    return evaluate(source, variables, step="s", what="expression")


@PROPERTY
@given(value=texts)
def test_base64_of_text_decodes_to_the_same_text(value: str) -> None:
    encoded = cel("base64.encode(v)", v=value)
    assert encoded == base64.b64encode(value.encode()).decode()
    assert cel("string(base64.decode(e))", e=encoded) == value
    assert cel("string(base64.decode(e))", e=encoded.rstrip("=")) == value  # padding optional


@PROPERTY
@given(value=st.binary(max_size=60))
def test_base64url_of_bytes_is_url_safe_unpadded_and_decodes_back(value: bytes) -> None:
    encoded = cel("base64url.encode(v)", v=value)
    assert not set(encoded) & set("+/=")
    assert cel("base64url.decode(e)", e=encoded) == value


@PROPERTY
@given(value=texts)
def test_url_encode_leaves_only_unreserved_characters_and_decodes_back(value: str) -> None:
    encoded = cel("url.encode(v)", v=value)
    assert all(c.isascii() and (c.isalnum() or c in "-._~%") for c in encoded)
    assert unquote(encoded) == value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


@PROPERTY
@given(value=json_values)
def test_json_encode_writes_json_that_reads_back_as_the_value(value: Any) -> None:
    text = cel("json.encode(v)", v=value)
    assert json.loads(text) == value
    assert cel("json.decode(t)", t=text) == value


@PROPERTY
@given(
    parts=st.lists(st.text(alphabet="abc,;é ", max_size=8), min_size=1, max_size=6),
    sep=st.sampled_from([",", ";", " - "]),
)
def test_split_and_join_are_inverse_and_match_python(parts: list[str], sep: str) -> None:
    joined = cel("p.join(s)", p=parts, s=sep)
    assert joined == sep.join(parts)
    assert cel("j.split(s)", j=joined, s=sep) == joined.split(sep)
    assert cel("j.split(s).join(s)", j=joined, s=sep) == joined


@PROPERTY
@given(value=texts, data=st.data())
def test_substring_is_python_slicing_by_code_point_and_refuses_out_of_range(value: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(value)))
    end = data.draw(st.integers(start, len(value)))
    assert cel("v.substring(a, b)", v=value, a=start, b=end) == value[start:end]
    assert cel("v.substring(a)", v=value, a=start) == value[start:]
    with pytest.raises(InvalidRecord, match=r"substring\(0, \d+\) is outside a string of length"):
        cel("v.substring(0, n)", v=value, n=len(value) + 1)


@PROPERTY
@given(value=texts)
def test_lower_and_upper_ascii_change_ascii_letters_only(value: str) -> None:
    lower, upper = cel("v.lowerAscii()", v=value), cel("v.upperAscii()", v=value)
    for original, lo, up in zip(value, lower, upper, strict=True):
        if original.isascii():
            assert (lo, up) == (original.lower(), original.upper())
        else:
            assert lo == up == original


@PROPERTY
@given(login=texts, session=texts, number=st.integers(0, 10**9))
def test_a_session_header_template_carries_exactly_its_parts(login: str, session: str, number: int) -> None:
    template = "'Session ' + base64.encode(login + ':' + string(id) + ':' + session)"
    header = cel(template, login=login, id=number, session=session)
    assert header.startswith("Session ")
    assert base64.b64decode(header.removeprefix("Session ")).decode() == f"{login}:{number}:{session}"


def test_a_session_header_is_built_the_way_a_target_expects() -> None:
    header = cel("'Session ' + base64.encode(login + ':' + string(id) + ':' + session)", login="u", id=7, session="s")
    assert header == "Session " + base64.b64encode(b"u:7:s").decode()


def test_an_erpnext_filter_is_built_as_json_from_the_record() -> None:
    record = {"tax_id": 'DE 123"456', "postal_code": "10115"}
    built = cel("json.encode([['tax_id', '=', r.tax_id], ['pincode', '=', r.postal_code]])", r=record)
    assert json.loads(built) == [["tax_id", "=", 'DE 123"456'], ["pincode", "=", "10115"]]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("base64.decode('not base64!')", "base64.decode() was given text that is not base64"),
        ("json.encode(b'x')", "json.encode() cannot write bytes; use base64.encode(value) first"),
        ("[1, 2].join(',')", "join() takes a list of strings"),
        ("json.decode('{')", "json.decode() was given text that is not JSON"),
    ],
)
def test_a_function_given_the_wrong_value_fails_the_record_with_its_own_words(source: str, message: str) -> None:
    with pytest.raises(InvalidRecord) as failed:
        cel(source)
    assert message in str(failed.value)
    assert "Python function call failed" not in str(failed.value)


def test_every_registered_function_is_known_and_a_typo_is_not() -> None:
    calls = " + ".join(f"{name}(x)" for name in CEL_FUNCTIONS if "." in name)
    assert unknown_functions(calls) == []
    assert unknown_functions("x.lowerAscii() + x.trim() + string(size(x))") == []
    assert unknown_functions("x.lowercase() + toUpper(x)") == ["lowercase", "toUpper"]


def test_validate_refuses_a_step_calling_a_function_no_runner_has() -> None:
    doc = {
        "apiVersion": "onceflow.io/v1alpha1",
        "kind": "Integration",
        "metadata": {"name": "flow"},
        "spec": {
            "trigger": {"subject": "onceflow.ns.in.crm.x"},
            "steps": [{"name": "m", "map": {"fields": {"name": "input.name.toLowerCase()"}}}],
        },
    }
    (problem,) = validate_manifest(doc, "f.yaml")
    assert problem.path == "spec.steps[0].map.fields.name"
    assert "calls toLowerCase(), which CEL and Onceflow do not provide" in problem.message
    assert "lowerAscii" in problem.message
