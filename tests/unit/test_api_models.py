from __future__ import annotations

from pathlib import Path
from typing import Any

import cel
import pytest
import yaml

from onceflow_operator.api import KINDS, Integration, SyncPolicy, build_crds
from onceflow_operator.api.crd import openapi_schema
from onceflow_operator.gen.crdfiles import crd_files
from tests import cases

ROOT = Path(__file__).resolve().parents[2]


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for name, sub in node.get("properties", {}).items():
            out += _walk(sub, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                out += _walk(node[key], f"{path}[{key}]")
    return out


@pytest.mark.parametrize("folder", ["crds", "helm/onceflow/crds"])
def test_committed_crds_match_the_models(folder: str) -> None:
    for name, text in crd_files().items():
        committed = (ROOT / folder / name).read_text()
        assert committed == text, f"{folder}/{name} is stale: run `make crds` and commit the result"


def test_schemas_are_structural() -> None:
    for crd in build_crds():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema):
            assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "const"} & node.keys(), path
            if path and path != ".metadata":
                assert "type" in node, f"{crd['metadata']['name']}{path} has no type"


def test_every_string_and_list_is_bounded_so_cel_cost_fits() -> None:
    for crd in build_crds():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema):
            where = f"{crd['metadata']['name']}{path}"
            if path in {".apiVersion", ".kind"}:
                continue
            if node.get("type") == "string" and "enum" not in node and node.get("format") != "date-time":
                assert "maxLength" in node, f"{where}: string without maxLength"
            if node.get("type") == "array":
                assert "maxItems" in node, f"{where}: list without maxItems"
            if node.get("type") == "object" and "additionalProperties" in node:
                assert "maxProperties" in node, f"{where}: map without maxProperties"


def test_every_cel_rule_compiles_and_has_a_message() -> None:
    for crd in build_crds():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema):
            for rule in node.get("x-kubernetes-validations", []):
                cel.compile(rule["rule"])
                assert len(rule["message"]) > 20, f"{path}: message too terse to help"


def test_every_field_has_a_description() -> None:
    for info in KINDS:
        spec = openapi_schema(info.model)["properties"]["spec"]
        for path, node in _walk(spec, ".spec"):
            if path.endswith("]") and node.get("type") != "object":
                continue  # the scalar items of a described list or map
            assert node.get("description"), f"{info.kind}{path} has no description"


def test_list_maps_are_keyed_so_server_side_apply_merges_them() -> None:
    integration = next(c for c in build_crds() if c["spec"]["names"]["kind"] == "Integration")
    schema = integration["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    steps = schema["properties"]["spec"]["properties"]["steps"]
    conditions = schema["properties"]["status"]["properties"]["conditions"]
    assert steps["x-kubernetes-list-map-keys"] == ["name"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_printer_columns_and_category() -> None:
    by_kind = {c["spec"]["names"]["kind"]: c for c in build_crds()}
    cols = [c["name"] for c in by_kind["Integration"]["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert cols == ["Ready", "Phase", "Version", "Revision", "Weight", "Age", "Stable", "Current", "Message"]
    for crd in by_kind.values():
        assert crd["spec"]["names"]["categories"] == ["onceflow"]
        assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_defaults_are_in_the_schema() -> None:
    by_kind = {c["spec"]["names"]["kind"]: c for c in build_crds()}
    spec = by_kind["Integration"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    props = spec["properties"]
    assert props["replicas"]["default"] == 1
    assert props["errorPolicy"]["default"]["maxDeliver"] == 5
    assert props["errorPolicy"]["properties"]["backoff"]["default"] == ["1s", "10s", "1m"]
    assert props["strategy"]["properties"]["type"]["default"] == "RollingUpdate"


def test_integration_model_reads_an_example_and_names_step_kinds() -> None:
    docs = list(yaml.safe_load_all((ROOT / "examples/customer-onboarding/integration.yaml").read_text()))
    integration = Integration.model_validate(docs[0])
    assert [s.kind for s in integration.spec.steps] == [
        "map",
        "validate",
        "dedupe",
        "call",
        "publish",
        "call",
        "call",
    ]
    assert integration.spec.error_policy.max_deliver == 6
    assert integration.spec.sync_policy_ref is not None
    assert integration.spec.sync_policy_ref.name == "customer"


def test_syncpolicy_defaults() -> None:
    policy = SyncPolicy.model_validate(cases.syncpolicy())
    assert policy.spec.conflict_policy == "SystemOfRecordWins"
    assert policy.spec.match_rules == []
    assert policy.spec.tolerances.price_deviation_percent == 0


def test_the_api_reference_is_generated_from_the_models_and_is_current() -> None:
    from onceflow_operator.gen.apidoc import render

    committed = (Path(__file__).resolve().parents[2] / "docs" / "api-reference.md").read_text()
    assert committed == render(), "docs/api-reference.md is stale: run `make docs`"
    for field in (
        "`spec.strategy.canary.steps[].setWeight`",
        "`spec.rest.auth.type`",
        "`status.rollout.canaryRevision`",
    ):
        assert field in committed
