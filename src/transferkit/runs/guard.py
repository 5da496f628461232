"""The negative-transfer guard of one run (``train --guard``): the from-scratch and source-only baselines
on the same split and seed, compared with the run on the target's validation rows (never the test set)
by ``select.guard.paired_guard``. ``compare`` uses ``guard_rows`` too and compares over its seeds."""

from __future__ import annotations

from pathlib import Path

from transferkit.config import RunConfig, parse_config
from transferkit.errors import TransferkitError
from transferkit.select.guard import guard_warning, paired_guard

GUARD_FRACTION = 0.1  # target rows held out for the guard when the config sets no data.guard_fraction
LABELS = {"scratch": "from scratch", "source_only": "source only"}


def guard_rows(cfg: RunConfig) -> tuple[RunConfig, str | None]:
    """``cfg`` with target validation rows for the negative-transfer guard, and a note when they had to be
    drawn: unless ``data.guard_fraction`` is set, it holds out ``GUARD_FRACTION`` of the target's labelled
    rows (never the test rows). No run trains on them or picks its epoch by them, which is why they are
    never the validation split (a best epoch chosen on the very rows the guard compares on flatters
    every run, the noisier the more)."""
    d = cfg.data
    if d.guard_fraction > 0:
        return cfg, None
    note = (f"Negative-transfer guard: {100 * GUARD_FRACTION:.0f} % of the target's labelled rows (never the test rows, "
            "never trained on, never used to pick an epoch) are held out to compare the transfer with its baselines; "
            "they are usually more than the labels a few-shot run trains on, so the verdict is more certain than a "
            "user with only those labels could be.")
    return cfg.model_copy(update={"data": d.model_copy(update={"guard_fraction": GUARD_FRACTION})}), note


def check_guard(cfg: RunConfig) -> None:
    """Refuse, before any training, a run the guard cannot judge."""
    if cfg.model.task != "classification":
        raise TransferkitError(f"The negative-transfer guard compares validation accuracy, so it needs model.task "
                               f"'classification' (got '{cfg.model.task}'); train without --guard.")
    if cfg.data.shots == 0:
        raise TransferkitError("The negative-transfer guard validates on target labels and data.shots is 0; give "
                               "data.shots >= 1 or train without --guard.")
    if cfg.strategy.name == "scratch":
        raise TransferkitError("Strategy 'scratch' is the guard's own baseline; train a transfer strategy with "
                               "--guard, or drop --guard.")


def baselines(cfg: RunConfig, out: Path) -> dict:
    """Per baseline that applies, its per-row correctness on ``cfg``'s guard rows: from scratch always;
    source only when ``model.weights`` holds a head for these labels (scored as it is) or with
    ``data.source`` (trained on the source alone). Runs go to ``out/<name>``."""
    from transferkit.api import guard_correct, source_only, split_data, train

    base = cfg.model_dump(mode="json", exclude={"compare"})
    scratch = base | {"name": f"{cfg.name or 'run'}-guard-scratch", "strategy": {"name": "scratch", "args": {}}}
    out_correct = {"scratch": train(scratch, out=out / "scratch", overwrite=True, progress=False).guard_correct}
    src = base | {"name": f"{cfg.name or 'run'}-guard-source-only", "strategy": {"name": "full", "args": {}}}
    res = source_only(src, out / "source_only", overwrite=True)
    if res is not None:
        out_correct["source_only"] = res.guard_correct
    elif cfg.data.source is not None:  # no target label: the model trained on the source data alone
        src["data"] = src["data"] | {"shots": 0, "guard_fraction": 0.0}
        model = train(src, out=out / "source_only", overwrite=True, progress=False).model
        out_correct["source_only"] = guard_correct(model, split_data(parse_config(base))[3],
                                                   cfg.train.eval_batch_size)
    return {k: v for k, v in out_correct.items() if v is not None}


def verdict(name: str, correct, others: dict, note: str | None) -> dict:
    """The guard's record for the run's summary: the better baseline on validation, the figures (fractions),
    and ``warning`` (one sentence, or None) and ``note`` (how the rows were drawn, or None)."""
    if correct is None or len(correct) < 2 or not others:
        return {"warning": None, "note": "The guard found no target validation rows; nothing compared."}
    best = max(others, key=lambda n: others[n].mean())
    res = paired_guard([correct], [others[best]])
    return {"baseline": best, "accuracy": res.transfer, "baseline_accuracy": res.baseline,
            "difference": res.difference, "se": res.se, "rows": res.rows,
            "baselines": {n: float(c.mean()) for n, c in others.items()},
            "warning": guard_warning(res, f"strategy '{name}'", LABELS[best]), "note": note}
