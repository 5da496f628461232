"""The strategy contract lives in ``transferkit.strategy``; these names stay importable from here."""

from transferkit.strategy import (  # noqa: F401
    Batch, Compose, Phase, Step, Strategy, all_parameters_phase, check_number, head_only_phase,
)
