"""Every table the CLI prints fits an 80-column terminal with no word split, and `list` shows whole sentences."""

import inspect
import re

import pytest
from rich.console import Console

from transferkit.backbones import BACKBONES
from transferkit.continual import CONTINUAL
from transferkit.data import DATASETS
from transferkit.finetune import STRATEGIES
from transferkit.heads import HEADS
from transferkit.multitask import WEIGHTERS

REGISTRIES = {"backbones": BACKBONES, "strategies": STRATEGIES, "datasets": DATASETS, "heads": HEADS,
              "continual": CONTINUAL, "weighters": WEIGHTERS}


def render(tables) -> list[str]:
    console = Console(width=80, record=True, color_system=None)
    for t in tables:
        console.print(t)
    return console.export_text().splitlines()


def assert_fits(lines: list[str], cells: list[str]) -> None:
    """No line wider than 80; every word of every cell whole on one line; nothing cut off with '…'."""
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    assert not any("…" in line for line in lines), "\n".join(lines)
    for cell in cells:
        for word in str(cell).split():
            assert any(word in line for line in lines), (word, "\n".join(lines))


def compare_rows(names):
    return [dict(strategy=s, shots=k, accuracy_mean=88.123, accuracy_std=12.34, vs_scratch=-13.21,
                 baseline="scratch", vs_baseline=-13.21, negative_transfer=s != "scratch", trainable_parameters=123456789, trainable_vs_full=1.0,
                 train_seconds=12345.6) for s in names for k in (10, "all")]


def test_compare_and_demo_table_fits_80_columns():
    from transferkit.compare import print_table

    rows = compare_rows(["scratch", "feature_extraction", "full", "two_stage", "lora_r2_alpha16_dropout"])
    console = Console(width=80, record=True, color_system=None)
    print_table(rows, console, "MNIST -> USPS, 10 labelled target images per class, 3 seeds")
    lines = console.export_text().splitlines()
    assert_fits(lines, ["feature extraction (cached)", "two-stage fine-tuning", "lora_r2_alpha16_dropout",
                        "88.1", "12.3", "-13.2", "12345.6"])
    assert any("negative transfer" in line for line in lines)


def test_compare_table_keeps_the_numbers():
    from transferkit.compare import results_tables

    lines = render(results_tables(compare_rows(["scratch", "full"]), "t"))
    body = "\n".join(lines)
    assert "88.1 ±12.3" in body and "-13.2 !" in body and "123.46M" in body and "100.0" in body


@pytest.mark.parametrize("family", list(REGISTRIES))
def test_list_tables_fit_80_columns(family):
    from transferkit.cli import list_tables

    reg = REGISTRIES[family]
    lines = render(list_tables(family))
    assert_fits(lines, [reg.describe(n) for n in reg.names()] + reg.names())


def test_continual_table_fits_80_columns():
    from transferkit.cli import continual_tables

    rows = [dict(strategy=s, setting=g, average_accuracy=87.23, forgetting=10.45, bwt=-10.45, fwt="n/a",
                 seconds=12345.6) for s in ("naive", "derpp_buffer_5000", "task_adapters") for g in ("class", "task")]
    lines = render(continual_tables(rows, "continual: split_mnist_every_strategy"))
    assert_fits(lines, ["derpp_buffer_5000", "task_adapters", "87.23", "-10.45", "n/a", "12345.6", "forgetting"])


@pytest.mark.parametrize("tasks", [["left", "right"], ["books", "dvd", "electronics", "kitchen"],
                                   [f"attribute_{i}" for i in range(9)]])
def test_multitask_table_fits_80_columns(tasks):
    from transferkit.cli import multitask_tables
    from transferkit.report.multitask import delta_m_rows

    summary = {n: {"tasks": {t: {"mean": 0.8512, "std": 0.0123} for t in tasks}, "delta_m": -1.23,
                   "delta_m_std": 0.45, "seconds": 1234.5} for n in ("uncertainty", "gradnorm", "cagrad")}
    summary["single_task"] = {"tasks": {t: {"mean": 0.9, "std": 0.0} for t in tasks}, "seconds": 1.0}
    headers, rows = delta_m_rows(summary, tasks)
    lines = render(multitask_tables(headers, rows, "multitask: amazon"))
    assert_fits(lines, [*tasks, "uncertainty", "single_task", "85.12", "±1.23", "-1.23", "±0.45", "(baseline)"])


def _sentence_ends(doc: str) -> list[int]:
    return [m.end() for m in re.finditer(r"[.!?](?=\s+[A-Z]|$)", doc)]


@pytest.mark.parametrize("family", list(REGISTRIES))
def test_listed_descriptions_end_their_first_sentence(family):
    """The text `transferkit list` shows is the docstring up to a sentence end, never cut mid-sentence."""
    reg = REGISTRIES[family]
    for name in reg.names():
        text = reg.describe(name)
        doc = " ".join(inspect.cleandoc(getattr(reg.get(name), "__doc__", None) or "").split("\n\n")[0].split())
        assert text, name
        if not doc or family == "datasets":  # a registered one-line help (torchvision backbones, datasets)
            continue
        assert doc.startswith(text), (name, text)
        assert len(text) in _sentence_ends(doc) or len(text) == len(doc), (name, text)
