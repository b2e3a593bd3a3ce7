"""Text for people at a terminal: one-line values and aligned tables."""

from __future__ import annotations

from collections.abc import Sequence

import orjson


def one_line(text: str, limit: int | None) -> str:
    """Text as one line: JSON-quoted when it holds control characters, cut at ``limit``."""
    shown = orjson.dumps(text).decode() if any(c < " " for c in text) else text
    if limit is not None and len(shown) > limit:
        return shown[: limit - 1] + "…"
    return shown


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned with two spaces between them; the last one is not padded. Empty
    ``headers``: no header line (the rows give the columns)."""
    lines = [headers, *rows] if headers else list(rows)
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
