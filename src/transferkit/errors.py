"""User-facing errors: one sentence that names the input and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TransferkitError(ValueError):
    """A problem with the user's input, config or files; the message says how to fix it.

    The CLI prints the message alone (no traceback unless ``--debug``) and exits with code 2.
    """


class TrainingDiverged(TransferkitError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return `` Did you mean 'x'?`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> TransferkitError:
    """The error for a name that is not in a registry, with a did-you-mean."""
    choices = sorted(choices)
    return TransferkitError(
        f"Unknown {kind} '{name}'.{did_you_mean(name, choices)} Available: {', '.join(choices)}."
    )
