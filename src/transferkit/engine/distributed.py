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

from transferkit.errors import TransferkitError

# Strategies whose loss on a batch is the mean of per-row losses plus terms of the weights alone, so
# that DDP's averaged gradient over equal shares is the one-process gradient of the whole batch.
# Others (batch statistics such as BSS's singular values or a domain discriminator's batch, gradients
# formed by the strategy itself, memories filled per process) are refused until checked.
DDP_STRATEGIES = frozenset({"scratch", "full", "partial", "two_stage", "discriminative", "l2sp",
                            "feature_extraction", "lora", "adapters"})


def world_size() -> int:
    """The number of processes of this run (1 when not launched by torchrun / accelerate launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this process writes the run directory: the one of global rank 0."""
    return int(os.environ.get("RANK", "0")) == 0


def check_run(name: str, guard: bool) -> None:
    """Refuse, in one sentence, what does not run under several processes: ``--guard`` (its baselines
    train in one process) or a strategy (``"a+b"`` for a composition) not checked there."""
    if guard:
        raise TransferkitError("--guard trains its baselines in one process; run it without --processes or torchrun.")
    unchecked = [p.strip() for p in name.split("+") if p.strip() not in DDP_STRATEGIES]
    if unchecked:
        raise TransferkitError(
            f"Strategy '{name}' is not checked under several processes ('{unchecked[0]}' is not one of "
            f"{', '.join(sorted(DDP_STRATEGIES))}); train it in one process (without --processes or torchrun).")


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
