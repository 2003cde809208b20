"""docs/api-reference.md, generated from the same schema the CRDs are (pure, plus `main`).

Every field of Connector, Integration and SyncPolicy: its path, type, default, whether it is
required, its limits and its description, plus the CEL rules the API server enforces.
`python -m onceflow_operator.gen.apidoc` rewrites the file; a test fails when it is stale.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from onceflow_operator.api.crd import KINDS, openapi_schema

__all__ = ["main", "render"]

_LIMITS = (
    ("minLength", "min length {}"),
    ("maxLength", "max length {}"),
    ("minimum", "≥ {}"),
    ("maximum", "≤ {}"),
    ("minItems", "at least {} items"),
    ("maxItems", "at most {} items"),
    ("pattern", "pattern `{}`"),
)


def _type(node: dict[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    kind = str(node.get("type", "object"))
    if kind == "array":
        return f"list of {_type(node.get('items', {}))}"
    if node.get("format") == "date-time":
        return "timestamp"
    if kind == "object" and "additionalProperties" in node and "properties" not in node:
        return "map"
    return kind


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(node: dict[str, Any], path: str, required: bool) -> Iterator[str]:
    limits = ", ".join(fmt.format(_cell(str(node[key]))) for key, fmt in _LIMITS if key in node)
    default = f"`{_cell(json.dumps(node['default']))}`" if "default" in node else ""
    yield (
        f"| `{path}` | {_type(node)} | {'yes' if required else ''} | {default} | {limits} | "
        f"{_cell(str(node.get('description', '')))} |"
    )
    for rule in node.get("x-kubernetes-validations", []):
        yield f"| `{path}` | rule | | | | {_cell(rule['message'])} (`{_cell(rule['rule'])}`) |"
    children = node.get("properties", {})
    needed = set(node.get("required", []))
    if node.get("type") == "array" and "properties" in node.get("items", {}):
        children, needed = node["items"]["properties"], set(node["items"].get("required", []))
        for rule in node["items"].get("x-kubernetes-validations", []):
            yield f"| `{path}[]` | rule | | | | {_cell(rule['message'])} (`{_cell(rule['rule'])}`) |"
        path = f"{path}[]"
    for name, child in children.items():
        yield from _rows(child, f"{path}.{name}", name in needed)


def render() -> str:
    """The whole reference as Markdown."""
    out = [
        "# API reference: onceflow.io/v1alpha1",
        "",
        "Generated from the pydantic models in `operator/onceflow_operator/api/` (the same source as",
        "the CRDs) by `make docs`; a test fails when this file is stale. `rule` rows are CEL",
        "validations the API server runs at `kubectl apply` (and `onceflow validate` offline).",
        "",
    ]
    for info in KINDS:
        schema = openapi_schema(info.model)
        out += [f"## {info.kind}", "", str(schema.get("description", "")), ""]
        for part in ("spec", "status"):
            node = schema["properties"].get(part)
            if node is None:
                continue
            out += [
                f"### {info.kind} {part}",
                "",
                "| Field | Type | Required | Default | Limits | Description |",
                "|---|---|---|---|---|---|",
                *_rows(node, part, part == "spec"),
                "",
            ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Write the reference (default docs/api-reference.md)."""
    Path(argv[0] if argv else "docs/api-reference.md").write_text(render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
