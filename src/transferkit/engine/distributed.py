"""Several processes (PyTorch DDP through Accelerate): which process writes, which strategies are
checked to train as one process would, and starting N local processes.

A run under N processes reads its process count from the environment that ``torchrun`` /
``accelerate launch`` set (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``...); ``transferkit train
--processes N`` starts them itself (``launch_local``). ``train.batch_size`` stays the global batch:
each process takes its share of every batch of the one epoch order (the trainer's ``ShardedBatches``),
its loss weighted by that share, and DDP averages the gradients, so N processes take the same steps as one.
"""

from __future__ import annotations

import os
import sys

import torch

from transferkit.errors import TransferkitError
from transferkit.strategy import Compose, Strategy

# Strategies whose step under N processes is the one-process step of the whole batch: a loss that is a
# mean over rows plus terms of the weights alone (DDP's average of the processes' gradients, each
# weighted by its share), terms of a whole batch's statistics that every process computes on the
# gathered rows (domain adaptation: ``transferkit.collective.gather_rows``), gradients formed from the
# whole batch's per-task gradients (multi-task weighters; ``Step.reduce``), and statistics estimated on
# the full data in every process (EWC's Fisher). Others (BSS's singular values of a batch, MCD's steps
# inside the backward, memories filled per process: replay, A-GEM, DER) are refused until checked.
DDP_STRATEGIES = frozenset({"scratch", "full", "partial", "two_stage", "discriminative", "l2sp",
                            "feature_extraction", "lora", "adapters",
                            "dan", "coral", "dann", "cdan", "cdan_e", "entropy", "mcc",
                            "multitask", "naive", "ewc", "oewc"})


def world_size() -> int:
    """The number of processes of this run (1 when not launched by torchrun / accelerate launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this process writes the run directory: the one of global rank 0."""
    return int(os.environ.get("RANK", "0")) == 0


def _refuse_unchecked(label: str, parts: list[str]) -> None:
    unchecked = [p for p in parts if p not in DDP_STRATEGIES]
    if unchecked:
        raise TransferkitError(
            f"Strategy '{label}' is not checked under several processes ('{unchecked[0]}' is not one of "
            f"{', '.join(sorted(DDP_STRATEGIES))}); train it in one process (without --processes or torchrun).")


def start(device: str) -> bool:
    """Under several processes, start the process group (every process waits for the others); return
    whether this process writes the run directory (always, in one process)."""
    if world_size() == 1:
        return True
    from accelerate import PartialState

    PartialState(cpu=device == "cpu").wait_for_everyone()
    return is_main_process()


def barrier() -> None:
    """Wait for every process (under several): process 0 has written what the others read next."""
    if world_size() > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def check_run(name: str, guard: bool) -> None:
    """Refuse, in one sentence, what does not run under several processes: ``--guard`` (its baselines
    train in one process) or a strategy (``"a+b"`` for a composition) not checked there."""
    if guard:
        raise TransferkitError("--guard trains its baselines in one process; run it without --processes or torchrun.")
    _refuse_unchecked(name, [p.strip() for p in name.split("+")])


def check_strategy(model: torch.nn.Module, strategy: Strategy) -> None:
    """The trainer's check under several processes: every part of ``strategy`` is checked there, and a
    domain-adaptation part does not meet BatchNorm, whose statistics each process would take over its
    own share of the two domains' rows (SyncBatchNorm is not used: it needs GPUs)."""
    parts = [s for s in strategy.modules() if isinstance(s, Strategy) and not isinstance(s, Compose)]
    names = [s.name for s in parts]
    _refuse_unchecked(getattr(strategy, "label", None) or "+".join(names), names)
    aligning = [s.name for s in parts if getattr(s, "needs_unlabelled", False)]
    if aligning and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise TransferkitError(
            f"Strategy '{aligning[0]}' aligns batch statistics of two domains, but the model's BatchNorm layers "
            "would normalise each process's rows apart; train it in one process, or use a backbone without "
            "BatchNorm (e.g. mlp) under several processes.")


def launch_local(processes: int, argv: list[str]) -> int:
    """Run ``python -m transferkit *argv`` in ``processes`` local processes through torchrun (a
    rendezvous on a free localhost port); returns the exit status (non-zero when any process failed)."""
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={processes}", "--no-python",
                                         sys.executable, "-m", "transferkit", *argv])
    try:
        run(args)
    except Exception as e:  # torch's ChildFailedError: each failed process's traceback is already printed
        print(f"{type(e).__name__}: one of the {processes} processes failed; its error is printed above.",
              file=sys.stderr)
        return 1
    return 0
