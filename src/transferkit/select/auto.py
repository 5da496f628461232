"""``strategy: auto``: which strategy to transfer with, from what is measured before any training.

``choose(facts)`` is a pure function of the labels per class, the source model and data at hand, the
domain distance, the transferability of the source features and the budget; it returns the strategy, its
arguments, the model keys it changes and a one-sentence reason. ``runs/auto.py`` measures the facts
(LogME after You et al., ICML 2021; the proxy A-distance after Ben-David et al., NIPS 2007) and applies the
choice. Each threshold below names the BENCHMARKS.md table it comes from; a new branch is one more
``if`` in ``choose`` with its constant and its evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transferkit.errors import TransferkitError

BUDGETS = ("normal", "low")  # strategy.args.budget: low = train few parameters (a small adapter per task)

# LogME is compared with a random initialisation's only from this many labels per class: with one label per
# class on MNIST -> USPS the demo's source scored -0.314 against the random -0.268 (10 rows, no spread within
# a class to model), although fine-tuning it gains 24.6 points over from-scratch there (the demo's table).
LOGME_MIN_SHOTS = 3
# "Deep domain adaptation: MNIST <-> USPS": MCC is the best deep method at 0 labels in both directions
# (96.0 / 93.0 % against 83.5 / 69.0 for DANN), and the demo's 0-label rows agree (94.9 vs 84.7).
ZERO_LABEL_METHOD = "mcc"
# MCC's trade-off weight (the paper's is 1.0): the best worst case over the two benchmarks where auto adapts.
# Amazon, 12 pairs, 0 labels (BENCHMARKS.md, "strategy: auto"; weights 0.03 / 0.1 / 0.3 / 0.5 / 1, 3 seeds):
# means 69.2 / 70.2 / 70.1 / 69.7 / 69.3 %, and at 1.0 two pairs fall below 95 % of the best other method
# (93.7 %, electronics -> kitchen), at 0.3 none (95.7 %). MNIST -> USPS from the demo's source head: 94.6 % at
# 1.0, 93.1 at 0.3, 92.8 at 0.1 (98.5 % of 1.0 at 0.3); benchmarks/auto/bench_mcc_weight.py.
MCC_WEIGHT = 0.3
# Proxy A-distance (0 = indistinguishable, 2 = separable) of the source features at or above which the
# domains count as distant; MNIST -> USPS in the demo source's features measures 1.9 and the Amazon pairs
# 1.70-1.97 (BENCHMARKS.md, "strategy: auto"). No pair below 1.0 has been measured: the value only keeps
# adaptation away from domains a domain classifier can barely tell apart.
PAD_DISTANT = 1.0
# Labels per class up to which unlabelled target data and a distant domain make adaptation worth it:
# MCC (weight 0.3) with the labels gives 93.7 / 94.8 / 94.7 % at 1 / 3 / 10 labels on MNIST -> USPS, against
# 87.3 / 91.1 / 93.9 for full fine-tuning of the source (BENCHMARKS.md, "strategy: auto"; the demo's table);
# beyond 10 labels it was not measured.
ADAPT_MAX_SHOTS = 10
# A backbone with at least this many parameters is kept frozen below LARGE_MAX_SHOTS labels per class:
# "Text transfer suite" (22.7M-parameter MiniLM, kitchen): feature extraction 85.3 / 86.2 % against the
# best 85.5 / 87.1 % at 10 / 50 labels, at 0.003 % of the parameters and features computed once.
LARGE_BACKBONE = 5_000_000
LARGE_MAX_SHOTS = 50
# At most this many labels per class and no source head: feature extraction ("Transfer suite", k=1:
# 89.0 ± 5.2 against full fine-tuning's 84.8 ± 7.3 from a new head).
FEW_SHOTS = 2
# The source head's fine-tuning recipe of the demo (full fine-tuning from the source head at a tenth of
# the rate beats feature extraction by 4.9 / 3.7 / 4.6 points at 1 / 3 / 10 labels). The demo slows the
# head too; here only the backbone (a strategy argument, not train.lr): 87.1 / 90.5 / 94.1 % against the
# demo's recipe at 87.6 / 91.0 / 94.0 in the same comparison (BENCHMARKS.md, "strategy: auto").
SOURCE_HEAD_LR_SCALE = 0.1
# "Transfer suite": LoRA r=2 stays within 3 points of full fine-tuning at 5-10 labels with 3 % of its
# parameters; on text (r=4, the rank used here) it was the best at 10 labels on an H100 (85.5 %) with 0.7 %,
# and on the CPU re-measure 84.1 ± 0.2, within a point of adapters (84.6 ± 0.7; "Text transfer suite").
LOW_BUDGET_METHOD = ("lora", {"r": 4})


@dataclass(frozen=True)
class Facts:
    """What ``choose`` decides from (measured by ``runs/auto.py`` or given by hand in tests).

    Attributes:
        shots: labelled target rows per class (mean over classes; 0: none, the rows are the source's).
        num_classes: classes of the target task.
        source_model: whether ``model.weights`` holds a source model.
        source_head: whether that model has a head for the same labels.
        source_data: whether labelled source data (``data.source``) trains beside the target rows.
        unlabelled: whether unlabelled target data (``data.unlabelled``) is given.
        pad: the proxy A-distance between source and target features (None: not measured).
        logme: LogME of the source features on the labelled target rows (None: no labels to score).
        logme_random: LogME of a random initialisation of the same backbone on the same rows.
        backbone_parameters: parameters of the backbone.
        budget: ``"normal"`` or ``"low"`` (few trainable parameters).
    """

    shots: float
    num_classes: int
    source_model: bool = True
    source_head: bool = False
    source_data: bool = False
    unlabelled: bool = False
    pad: float | None = None
    logme: float | None = None
    logme_random: float | None = None
    backbone_parameters: int = 0
    budget: str = "normal"


@dataclass(frozen=True)
class Choice:
    """The chosen strategy, its arguments, the model keys it sets (e.g. ``source_head``) and why."""

    strategy: str
    args: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    reason: str = ""


def check_budget(budget) -> str:
    if budget not in BUDGETS:
        raise TransferkitError(f"strategy.args.budget must be one of {', '.join(BUDGETS)}; got {budget!r}.")
    return budget


def _labels(shots: float) -> str:
    n = f"{shots:g}" if shots == int(shots) else f"{shots:.1f}"
    return f"{n} label{'' if shots == 1 else 's'} per class"


def _domain(pad: float | None) -> str:
    if pad is None:
        return ""
    return f"a {'distant' if pad >= PAD_DISTANT else 'close'} domain (A-distance {pad:.1f})"


def _sentence(facts: list[str], action: str) -> str:
    facts = [f for f in facts if f]
    said = facts[0] if len(facts) == 1 else ", ".join(facts[:-1]) + " and " + facts[-1]
    return f"{said[0].upper()}{said[1:]}, so {action}."


def _adapt(f: Facts, head: dict, facts: list[str]) -> Choice:
    """MCC domain adaptation at ``MCC_WEIGHT``, from what the model starts from, with the facts that led here."""
    start = "the source head" if f.source_head else "the source model" if f.source_model else "random weights"
    return Choice(ZERO_LABEL_METHOD, {"weight": MCC_WEIGHT}, head,
                  _sentence(facts, f"MCC domain adaptation (weight {MCC_WEIGHT:g}) from {start}"))


def choose(f: Facts) -> Choice:
    """The strategy for a transfer task, with a one-sentence reason (the branches in order; the first that
    applies decides).

    Raises:
        TransferkitError: 0 labels per class without unlabelled target data (nothing to adapt to).
    """
    check_budget(f.budget)
    labels, domain = _labels(f.shots), _domain(f.pad)
    head = {"source_head": True} if f.source_head else {}
    if f.shots == 0:
        if not f.unlabelled:
            raise TransferkitError("strategy auto with 0 labels per class needs unlabelled target data to adapt to; "
                                   "set data.unlabelled to the target domain's data or give data.shots >= 1.")
        return _adapt(f, head, ["no target label", "unlabelled target data", domain])
    if not f.source_model and not f.source_data:
        return Choice("scratch", {}, {}, _sentence([labels, "no source model (model.weights) or source data"],
                                                   "training from scratch"))
    if (f.logme is not None and f.logme_random is not None and f.shots >= LOGME_MIN_SHOTS
            and f.logme <= f.logme_random):
        return Choice("scratch", {}, {}, _sentence(
            [labels, f"source features that score no better than random ones (LogME {f.logme:.3f} vs "
                     f"{f.logme_random:.3f})"], "training from scratch"))
    if (f.unlabelled and f.source_data and f.pad is not None and f.pad >= PAD_DISTANT
            and f.shots <= ADAPT_MAX_SHOTS):
        return _adapt(f, head, [labels, domain, "unlabelled target data"])
    if not f.source_model:  # labelled source data only: trained beside the target rows
        return Choice("full", {}, {}, _sentence([labels, "labelled source data but no source model", domain],
                                                "training on the source and target rows together"))
    large = f.backbone_parameters >= LARGE_BACKBONE
    if large and f.shots <= LARGE_MAX_SHOTS:
        return Choice("feature_extraction", {}, head, _sentence(
            [labels, f"a {f.backbone_parameters / 1e6:.1f}M-parameter backbone"],
            "feature extraction (frozen backbone, cached features)"))
    if f.budget == "low":
        name, args = LOW_BUDGET_METHOD
        return Choice(name, dict(args), head, _sentence([labels, "a low parameter budget", domain],
                                                       f"LoRA (r={args['r']})"))
    if f.source_head:
        return Choice("full", {"backbone_lr_scale": SOURCE_HEAD_LR_SCALE}, head, _sentence(
            [labels, "a source head for the same labels", domain],
            "full fine-tuning from the source head with the backbone at a tenth of the rate"))
    if f.shots <= FEW_SHOTS:
        return Choice("feature_extraction", {}, {}, _sentence([labels, "a new head", domain],
                                                              "feature extraction (frozen backbone, cached features)"))
    return Choice("full", {}, {}, _sentence([labels, "a new head", domain], "full fine-tuning"))
