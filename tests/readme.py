"""The README's runnable parts, read from README.md itself so the tests run exactly what it shows: the
tour's console commands with their output, and the Node.js example."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?")


@dataclass(frozen=True)
class Command:
    line: str  # after "$ "
    output: str  # as the README shows it (stdout and stderr together)


def section(heading: str, text: str | None = None) -> str:
    """The text under a `## heading`, up to the next `## `."""
    text = README.read_text() if text is None else text
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def blocks(language: str, text: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.S | re.M)


def console_commands(text: str) -> list[Command]:
    """Every `$ command` of the console blocks in `text`, with the lines it printed."""
    commands: list[Command] = []
    for block in blocks("console", text):
        line, output = None, []
        for row in block.splitlines():
            if row.startswith("$ "):
                if line is not None:
                    commands.append(Command(line, "\n".join(output)))
                line, output = row[2:], []
            else:
                output.append(row)
        if line is not None:
            commands.append(Command(line, "\n".join(output)))
    return commands


def shape(output: str) -> list[str]:
    """Output with every number replaced by N, trailing blanks and blank lines dropped: what stays the
    same from machine to machine (names, verdicts, wording), not the 4th decimal of a distance."""
    return [NUMBER.sub("N", line).rstrip() for line in output.splitlines() if line.strip()]
