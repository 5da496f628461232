"""Rows of CSV and JSONL files (optionally gzipped), each with the line it starts on.

Every problem a user can make in such a file (bad encoding, an unclosed quote, a row with too few
or too many fields, a line that is not a JSON object, a missing column) becomes one
``TransferkitError`` naming the file, the row and the fix.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferkit.errors import TransferkitError


@dataclass(frozen=True)
class Rows:
    """The records of a text file: ``rows[i]`` is data row ``i + 1``, starting at ``lines[i]``."""

    path: Path
    rows: list[dict[str, Any]]
    lines: list[int]
    columns: list[str]  # the CSV header, or the keys of the first JSON object

    def where(self, i: int) -> str:
        """``'file' row 3 (line 4)``: where data row ``i`` (0-based) is, for error messages."""
        return f"'{self.path}' row {i + 1} (line {self.lines[i]})"

    def column(self, field: str) -> list[Any]:
        """Every row's ``field`` (checked to be present by ``require``)."""
        return [r[field] for r in self.rows]

    def require(self, *fields: str) -> None:
        """Raise for the first row without one of ``fields`` (a column missing from the file first)."""
        for field in fields:
            if not any(field in r for r in self.rows):
                raise TransferkitError(f"'{self.path}' has columns {self.columns} but needs '{field}'; rename the "
                                       "column or set the field name.")
            for i, r in enumerate(self.rows):
                if field not in r:
                    raise TransferkitError(f"{self.where(i)} has no '{field}'; add it or remove the row.")


def _csv_problem(e: csv.Error) -> str:
    msg = str(e)
    if "unexpected end of data" in msg:
        return 'a quoted field opens here and is never closed; close the quote (a quote inside a field is written "")'
    if "expected after" in msg:
        return ('a quote ends a field that goes on; quote the whole field and double each quote inside it '
                '("say ""hi"" now")')
    return f"{msg.rstrip('.')}; fix the CSV there"


def _read_csv(path: Path, f) -> Rows:
    reader = csv.reader(f, strict=True)
    rows: list[dict] = []
    lines: list[int] = []
    header: list[str] | None = None
    start = 1
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            row = f"row {len(rows) + 1} (line {start})" if header is not None else f"the header (line {start})"
            raise TransferkitError(f"'{path}' {row}: {_csv_problem(e)}.") from None
        if not any(v.strip() for v in fields):
            continue  # a blank line is not a row
        if header is None:
            header = fields
            dup = sorted({c for c in header if header.count(c) > 1})
            if dup:
                raise TransferkitError(f"'{path}': the header names column {dup[0]!r} twice; give every column its "
                                       "own name.")
            continue
        where = f"'{path}' row {len(rows) + 1} (line {start})"
        if len(fields) < len(header):
            missing = header[len(fields)]
            raise TransferkitError(f"{where} has no value for '{missing}' ({len(fields)} of {len(header)} fields); "
                                   "fill it in or remove the row.")
        if len(fields) > len(header):
            raise TransferkitError(f"{where} has {len(fields)} fields but the header has {len(header)}; quote a "
                                   'field that contains a comma ("a, b").')
        rows.append(dict(zip(header, fields)))
        lines.append(start)
    return Rows(path, rows, lines, list(header or []))


def _read_jsonl(path: Path, f) -> Rows:
    rows: list[dict] = []
    lines: list[int] = []
    for n, line in enumerate(f.read().split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise TransferkitError(f"'{path}' line {n} is not valid JSON; write one JSON object per line.") from None
        if not isinstance(obj, dict):
            raise TransferkitError(f"'{path}' line {n} holds a JSON {type(obj).__name__}, not an object; write one "
                                   '{"text": ..., "label": ...} object per line.')
        rows.append(obj)
        lines.append(n)
    return Rows(path, rows, lines, list(rows[0]) if rows else [])


def is_jsonl(path: Path) -> bool:
    """Whether ``path`` (``.jsonl``, ``.json``, optionally ``.gz``) holds JSON lines rather than CSV."""
    suffixes = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    return suffixes.startswith((".jsonl", ".json"))


def read_rows(path: str | Path) -> Rows:
    """The rows of a CSV (header first) or JSONL file, optionally gzipped; a UTF-8 BOM is ignored.

    CSV is read strictly (RFC 4180 quoting; line endings inside quoted fields kept as written).
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    limit = csv.field_size_limit(2**31 - 1)  # long texts are fine (the default stops at 128 KiB)
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
            return _read_jsonl(path, f) if is_jsonl(path) else _read_csv(path, f)
    except UnicodeDecodeError:
        raise TransferkitError(f"'{path}' is not UTF-8 text; re-save it as UTF-8.") from None
    except (OSError, EOFError, zlib.error) as e:
        raise TransferkitError(f"Cannot read '{path}' ({type(e).__name__}); check that the file is complete "
                               f"{'gzip' if path.suffix == '.gz' else 'text'}.") from None
    finally:
        csv.field_size_limit(limit)
