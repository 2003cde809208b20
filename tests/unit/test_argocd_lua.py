"""Argo CD health checks and resource actions, run under a real Lua 5.1 interpreter (as Argo CD's
gopher-lua is) against fixtures in Argo CD's own test format: health_test.yaml, action_test.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

ROOT = Path(__file__).resolve().parents[2] / "manifests" / "argocd" / "resource_customizations" / "onceflow.io"
KINDS = sorted(p.name for p in ROOT.iterdir() if p.is_dir())


def to_lua(lua: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return lua.table_from({k: to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([to_lua(lua, v) for v in value])
    return value


def from_lua(value: Any) -> Any:
    if lua51.lua_type(value) != "table":
        return value
    items = dict(value.items())
    if items and all(isinstance(k, int) for k in items) and sorted(items) == list(range(1, len(items) + 1)):
        return [from_lua(items[i]) for i in range(1, len(items) + 1)]
    return {k: from_lua(v) for k, v in items.items()}


def normalised(value: Any) -> Any:
    """Lua has one empty table for [] and {}; compare them as equal, as Argo CD's own tests do."""
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in value.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    return value


def run(script: Path, obj: dict[str, Any]) -> Any:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = to_lua(lua, obj)
    return from_lua(lua.execute(script.read_text()))


def cases(kind_file: str, key: str) -> list[Any]:
    out = []
    for kind in KINDS:
        path = ROOT / kind / kind_file
        if path.exists():
            for case in yaml.safe_load(path.read_text())[key]:
                out.append(pytest.param(path.parent, case, id=f"{kind}-{case.get('action', '')}-{case['inputPath']}"))
    return out


def test_every_kind_has_a_health_check_with_fixtures() -> None:
    assert KINDS == ["Connector", "Integration", "SyncPolicy"]
    for kind in KINDS:
        assert (ROOT / kind / "health.lua").exists()
        assert yaml.safe_load((ROOT / kind / "health_test.yaml").read_text())["tests"]


@pytest.mark.parametrize(("folder", "case"), cases("health_test.yaml", "tests"))
def test_health(folder: Path, case: dict[str, Any]) -> None:
    obj = yaml.safe_load((folder / case["inputPath"]).read_text())
    assert run(folder / "health.lua", obj) == case["healthStatus"]


@pytest.mark.parametrize(("folder", "case"), cases("actions/action_test.yaml", "discoveryTests"))
def test_action_discovery(folder: Path, case: dict[str, Any]) -> None:
    obj = yaml.safe_load((folder / case["inputPath"]).read_text())
    found = run(folder / "discovery.lua", obj)
    assert {name: spec["disabled"] for name, spec in found.items()} == {
        r["name"]: r["disabled"] for r in case["result"]
    }


@pytest.mark.parametrize(("folder", "case"), cases("actions/action_test.yaml", "actionTests"))
def test_action(folder: Path, case: dict[str, Any]) -> None:
    obj = yaml.safe_load((folder / case["inputPath"]).read_text())
    expected = yaml.safe_load((folder / case["expectedOutputPath"]).read_text())
    changed = run(folder / case["action"] / "action.lua", obj)
    assert normalised(changed) == normalised(expected)
    assert changed["spec"] == obj["spec"], "an action must never edit the spec (Argo CD self-heal would undo it)"


def test_the_argocd_cm_snippet_is_generated_from_these_scripts() -> None:
    from onceflow_operator.gen.argocd import build_argocd_cm, render

    committed = (ROOT.parents[1] / "argocd-cm.yaml").read_text()
    assert committed == render(ROOT.parent), "manifests/argocd/argocd-cm.yaml is stale: run `make argocd`"
    data = yaml.safe_load(committed)["data"]
    assert data == build_argocd_cm(ROOT.parent)["data"]
    actions = yaml.safe_load(data["resource.customizations.actions.onceflow.io_Integration"])
    assert sorted(d["name"] for d in actions["definitions"]) == sorted(
        ["abort", "pause", "promote", "promote-full", "resume", "retry"]
    )
    assert set(data) >= {f"resource.customizations.health.onceflow.io_{k}" for k in KINDS}


def test_example_applications_point_at_paths_in_this_repository() -> None:
    repo = ROOT.parents[3]
    for path in sorted((ROOT.parents[1]).glob("application-*.yaml")):
        app = yaml.safe_load(path.read_text())
        assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
        assert (repo / app["spec"]["source"]["path"]).is_dir(), path.name
        assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
