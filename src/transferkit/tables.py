"""Tables for the terminal that fit its width (80 columns when it is not a terminal) with every
word kept whole: column widths are chosen here, from the longest word and the longest line of
each column, and columns that do not fit beside each other go into a second table."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

WIDTH = 80  # rich's width when stdout is not a terminal


def _longest(texts: Sequence[str], words: bool) -> int:
    lines = [line for text in texts for line in str(text).split("\n")]
    return max((len(w) for line in lines for w in (line.split() if words else [line])), default=1) or 1


def fit_widths(columns: Sequence[Sequence[str]], width: int, keep: int = 0) -> list[int] | None:
    """Widths for ``columns`` (each: header, then cells) within ``width`` characters of table
    (borders and padding included: 3 per column plus 1); None when even the longest words do not fit.

    Headers wrap first, then the first ``keep`` columns (names), then the widest other columns,
    none below its longest word.
    """
    mins = [_longest(c, words=True) for c in columns]
    full = [max(_longest(c, words=False), m) for c, m in zip(columns, mins)]
    budget = width - 3 * len(columns) - 1
    if sum(mins) > budget:
        return None
    if sum(full) <= budget:
        return full
    widths = [max(_longest(c[1:], words=False), m) for c, m in zip(columns, mins)]  # headers wrapped
    while sum(widths) > budget:
        room = [i for i in range(len(widths)) if widths[i] > mins[i]]
        names = [i for i in room if i < keep]
        j = max(names or room, key=lambda i: widths[i])
        widths[j] -= 1
    return widths


def _groups(headers: list[str], rows: list[list[str]], keep: int, width: int) -> list[list[int]]:
    """Column indices per table: the first ``keep`` columns in each, the others as many as fit."""
    col = lambda i: [headers[i], *(r[i] for r in rows)]  # noqa: E731
    groups: list[list[int]] = []
    for i in range(keep, len(headers)):
        if groups and fit_widths([col(j) for j in groups[-1] + [i]], width, keep) is not None:
            groups[-1].append(i)
        else:
            groups.append(list(range(keep)) + [i])
    return groups or [list(range(len(headers)))]


def fitted_tables(title: str, headers: Sequence[str], rows: Sequence[Sequence], keep: int = 1,
                  width: int = WIDTH, caption: str | None = None) -> list[Table]:
    """Rich tables showing ``rows`` under ``headers`` within ``width`` columns, words never split.

    The first ``keep`` columns (names) are left-aligned and repeated in every table when the
    columns need more than one; the others are right-aligned. A cell ``"a ± b"`` may break
    before the ``±``. A word longer than the whole width is the only thing folded.
    """
    headers = [str(h) for h in headers]
    rows = [[str(c).replace(" ± ", " ±") if i >= keep else str(c) for i, c in enumerate(r)] for r in rows]
    groups = _groups(headers, rows, keep, width)
    tables = []
    for g, cols in enumerate(groups):
        widths = fit_widths([[headers[i], *(r[i] for r in rows)] for i in cols], width, keep)
        t = Table(title=title if g == 0 else None, caption=caption if g == len(groups) - 1 else None)
        for k, i in enumerate(cols):
            t.add_column(headers[i], justify="left" if i < keep else "right", overflow="fold",
                         width=widths[k] if widths else None)
        for r in rows:
            t.add_row(*(Text(r[i]) for i in cols))
        tables.append(t)
    return tables
