"""The shell blocks of a Markdown page and the output the page promises for each (for doc tests).

A ```` ```sh ```` block is a list of commands a reader pastes. The first ```` ```text ```` block after
it (prose may come between, another `sh` block may not) is what the page says the reader will
see: each of its lines must
appear in the output, in order, other output lines in between allowed. Runs of whitespace count
as one space (column widths may change) and `...` stands for anything (ports, ids, times).

An HTML comment right before a block steers the test, invisible to readers:
`<!-- quickstart-test: skip: WHY -->` (never run; the reason is required) or
`<!-- quickstart-test: repeat ... -->` (a read-only command whose output arrives asynchronously:
run again until it matches, as a reader would).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ShellBlock", "first_unmatched", "shell_blocks"]

_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"^<!--\s*quickstart-test:\s*(skip|repeat)\b:?\s*(.*?)\s*-->\s*$")


@dataclass
class ShellBlock:
    """One ```sh block: its commands, what the page says it prints, and how the test treats it."""

    line: int
    commands: str
    expected: list[str] = field(default_factory=list)
    skip: str | None = None
    repeat: bool = False

    def __str__(self) -> str:
        return f"block at line {self.line}: {self.commands.strip().splitlines()[0]}"


def shell_blocks(path: Path) -> list[ShellBlock]:
    """Every ```sh block of the page, in order, with its expected output and its marker."""
    lines = path.read_text().splitlines()
    blocks: list[ShellBlock] = []
    marker: re.Match[str] | None = None
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            found = _MARKER.match(lines[i])
            if found is not None:
                marker = found
            elif lines[i].strip():
                marker = None  # a marker steers only the block right after it
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        body = lines[i + 1 : end]
        if fence.group(1) == "sh":
            block = ShellBlock(line=i + 1, commands="\n".join(body) + "\n")
            if marker is not None and marker.group(1) == "skip":
                block.skip = marker.group(2) or "(no reason given)"
            block.repeat = marker is not None and marker.group(1) == "repeat"
            blocks.append(block)
        elif fence.group(1) == "text" and blocks and not blocks[-1].expected:
            blocks[-1].expected = body
        marker = None
        i = end + 1
    return blocks


def _pattern(expected: str) -> re.Pattern[str]:
    """One expected line as a regex: whitespace runs are one space, `...` is anything."""
    regex = ".*".join(re.escape(part) for part in " ".join(expected.split()).split("..."))
    # "a ... b" also matches "a b", and a leading or trailing "..." may stand for nothing.
    regex = regex.replace(r"\ .*\ ", r"(?:\ .*\ |\ )")
    if regex.endswith(r"\ .*"):
        regex = regex[: -len(r"\ .*")] + r"(?:\ .*)?"
    if regex.startswith(r".*\ "):
        regex = r"(?:.*\ )?" + regex[len(r".*\ ") :]
    return re.compile(regex)


def first_unmatched(expected: list[str], output: str) -> str | None:
    """The first expected line not found (in order) in `output`; None when all are there."""
    seen = [" ".join(line.split()) for line in output.splitlines()]
    position = 0
    for line in expected:
        if line.strip() in {"", "..."}:
            continue
        pattern = _pattern(line)
        while position < len(seen) and not pattern.fullmatch(seen[position]):
            position += 1
        if position == len(seen):
            return line
        position += 1
    return None
