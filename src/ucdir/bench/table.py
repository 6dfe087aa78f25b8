"""One Markdown table per benchmark figure: its caption, its columns and how a model's result
of the figure becomes rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]


def plain_rows(value: Any) -> list[Row]:
    """A figure's result as rows: one row for a mapping, else the list itself."""
    return [dict(value)] if isinstance(value, Mapping) else list(value)


@dataclass(frozen=True)
class Table:
    """How one figure is printed.

    Attributes:
        caption: line above the table; `{memory}` is replaced by what its memory column means.
        columns: (header, format) pairs; a format is filled with one row.
        rows: a model's result of the figure -> the rows to format.
    """

    caption: str
    columns: list[tuple[str, str]]
    rows: Callable[[Any], list[Row]] = field(default=plain_rows)

    def lines(self, results: Mapping[str, Any], memory: str = "") -> list[str]:
        """The caption and the table over `results` ({model name: its result of the figure})."""
        out = [self.caption.format(memory=memory)]
        out.append("| model | " + " | ".join(name for name, _ in self.columns) + " |")
        out.append("|" + " --- |" * (len(self.columns) + 1))
        for model, value in results.items():
            for row in self.rows(value):
                cells = [fmt.format(**row) for _, fmt in self.columns]
                out.append(f"| `{model}` | " + " | ".join(cells) + " |")
        return out
