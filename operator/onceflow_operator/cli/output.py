"""What the commands share: the options several groups take, the `-f` file expansion, and how rows print.

`-o` means the same for every command, as in kubectl: `table` (aligned columns, long cells
shortened with an ellipsis), `wide` (the table with extra columns and nothing shortened), `yaml`
and `json` (every field, unshortened, UTF-8 as text). Only click is imported here; json and yaml
load when a command prints.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.decorators import FC

__all__ = [
    "CELL_WIDTH",
    "OUTPUT_FORMATS",
    "dump",
    "emit_rows",
    "expand_paths",
    "manifests_option",
    "nats_option",
    "output_option",
    "shorten",
    "terminal_safe",
]

#: `--nats` for the commands people run (review, trace, console): $ONCEFLOW_NATS_URL is honoured.
nats_option = click.option(
    "--nats",
    "nats_url",
    envvar="ONCEFLOW_NATS_URL",
    default="nats://127.0.0.1:4222",
    show_default=True,
    help="NATS URL (or $ONCEFLOW_NATS_URL).",
)
#: What `-o` accepts, everywhere.
OUTPUT_FORMATS = ("table", "wide", "yaml", "json")
#: The widest a table cell gets under `-o table` (`-o wide` shows it whole).
CELL_WIDTH = 60
output_option = click.option(
    "-o",
    "--output",
    type=click.Choice(OUTPUT_FORMATS),
    default="table",
    show_default=True,
    help="table; wide (more columns, nothing shortened); yaml; json.",
)


def manifests_option(help_text: str, *, required: bool = True) -> Callable[[FC], FC]:
    """`-f/--filename FILE|FOLDER` (repeatable), as kubectl spells it."""
    return click.option(
        "-f",
        "--filename",
        "files",
        multiple=True,
        required=required,
        type=click.Path(exists=True, path_type=Path),
        help=help_text,
    )


def expand_paths(files: tuple[Path, ...]) -> list[Path]:
    """Files as given; folders as their YAML files, recursively, in a stable order."""
    paths: list[Path] = []
    for f in files:
        paths += sorted(p for p in f.rglob("*") if p.suffix in {".yaml", ".yml"}) if f.is_dir() else [f]
    return paths


def terminal_safe(text: str) -> str:
    """`text` with control and format characters other than newline and tab shown as escapes (ESC as x1b).

    Why: what `exceptions show` prints comes from outside systems (an ERP's customer name, its
    error text); an escape sequence there could retitle the terminal, write the clipboard or
    redraw lines, and a right-to-left override reorders what the reviewer reads.
    """
    import unicodedata

    def visible(c: str) -> str:
        if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf"):
            return c
        return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"

    return "".join(visible(c) for c in text)


def shorten(text: str, width: int = CELL_WIDTH) -> str:
    """`text` on one line, at most `width` characters: cut at a word boundary when there is one, ending in `…`."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    cut = flat[: width - 1]
    space = cut.rfind(" ")
    if space >= width // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


def dump(value: Any, output: str) -> str:
    """`value` as YAML or JSON; non-ASCII text stays text (`Köln`, not an escape sequence)."""
    import json

    import yaml

    if output == "json":
        return json.dumps(value, indent=2, default=str, ensure_ascii=False)
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True).rstrip("\n")


def emit_rows(
    rows: list[dict[str, Any]], output: str, columns: list[str], wide_columns: list[str] | None = None
) -> None:
    """Print rows as `output` says: json or yaml (whole rows), or a table of `columns` (headers upper-cased).

    `-o wide` adds `wide_columns` after `columns` and shows every cell whole.
    """
    if output in {"json", "yaml"}:
        click.echo(dump(rows, output))
        return
    wide = output == "wide"
    shown = [*columns, *(wide_columns or [])] if wide else columns

    def cell(row: dict[str, Any], column: str) -> str:
        value = row.get(column, "")
        text = "" if value is None else str(value)
        return " ".join(text.split()) if wide else shorten(text)

    cells = [[cell(r, c) for c in shown] for r in rows]
    widths = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(shown)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(shown, widths, strict=True)).rstrip())
    for line in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
