"""A rich progress bar over steps, silent when the output is not a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class EpochProgress:
    """``with EpochProgress(total_steps, enabled) as p: p.advance(loss)``."""

    def __init__(self, total: int, enabled: bool | None = None, description: str = "train") -> None:
        console = Console(stderr=True)
        self.enabled = console.is_terminal if enabled is None else enabled
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console,
                                  transient=True, disable=not self.enabled)
        self._task = self._progress.add_task(description, total=total, info="")

    def __enter__(self):
        self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self._progress.__exit__(*exc)

    def advance(self, n: int = 1, info: str | None = None) -> None:
        if self.enabled:
            self._progress.update(self._task, advance=n, **({"info": info} if info is not None else {}))

    def describe(self, text: str) -> None:
        if self.enabled:
            self._progress.update(self._task, description=text)
