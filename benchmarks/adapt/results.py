"""The benchmarks' results file: one JSON line per finished run, so an interrupted benchmark goes on
where it stopped."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path


def run_missing(out: Path, todo: Iterable[tuple[str, str, int]], run: Callable[[str, str, int], dict]) -> list[dict]:
    """Every ``(pair, method, seed)`` of ``todo`` not yet in ``out``: ``run`` it, print and append its row
    (which gets those three keys). Returns every row of ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    done = {(r["pair"], r["method"], r["seed"]) for r in rows}
    for pair, method, seed in todo:
        if (pair, method, seed) in done:
            continue
        r = {"pair": pair, "method": method, "seed": seed} | run(pair, method, seed)
        print(json.dumps(r), flush=True)
        rows.append(r)
        with out.open("a") as f:
            f.write(json.dumps(r) + "\n")
    return rows
