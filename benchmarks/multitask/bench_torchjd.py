"""Per-step time of the gradient-conflict methods, transferkit against TorchJD, on the same model
and batch, with 3 and 10 tasks; and whether both give the same update.

    make bench-torchjd     # (.venv-bench: torchjd[cagrad] pinned in benchmarks/multitask/requirements.txt)

A step is: forward, per-task losses, the per-task gradients of the shared parameters, the
aggregation, and the ``.grad`` of every parameter (the optimizer step itself is the same for both
and is left out). transferkit: ``aggregated_backward`` (one batched backward for the Jacobian,
the Gram matrix summed parameter by parameter, the weights from it, and the update formed
parameter by parameter); plain sum: ``sum(losses).backward()``. TorchJD:
``mtl_backward`` then ``jac_to_grad`` with its aggregator (``Sum`` for the plain sum).

Model: a shared MLP 784-512-256 on MNIST digits (batch 256), one linear head per task (task t
predicts (digit + t) mod 10). Timing: the two implementations alternate, ``--steps`` (50) steps each
after 10 warm-up steps each; the median per-step time is reported. The update check compares every
parameter's ``.grad`` after one step from the same weights: max |difference| / max |grad|.
PCGrad visits the other tasks in a random order in both libraries, so its update is compared
for two tasks only (where the order does not matter).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

warnings.filterwarnings("ignore")
import torchjd  # noqa: E402
from torchjd import aggregation as A  # noqa: E402
from torchjd.autojac import jac_to_grad, mtl_backward  # noqa: E402

from transferkit.multitask.gradients import aggregated_backward  # noqa: E402
from transferkit.multitask.weighters import WEIGHTERS  # noqa: E402

C = 0.5  # CAGrad's radius in both libraries


def methods():
    """name -> (the registered weighter's ``weights`` (None: the plain sum), TorchJD's aggregator,
    deterministic). CAGrad without transferkit's 1/(1+c^2) rescaling, which TorchJD does not apply;
    MGDA on the shared parameters with TorchJD's stopping rule settings."""
    return {
        "sum": (None, A.Sum(), True),
        "pcgrad": (WEIGHTERS.build("pcgrad").weights, A.PCGrad(), False),
        "cagrad": (WEIGHTERS.build("cagrad", c=C, rescale=False).weights, A.CAGrad(c=C), True),
        "mgda": (WEIGHTERS.build("mgda", upper_bound=False, max_iters=250, epsilon=1e-5).weights,
                 A.MGDA(epsilon=1e-5, max_iters=250), True),
        "imtl_g": (WEIGHTERS.build("imtl_g").weights, A.IMTLG(), True),
    }


class Net(nn.Module):
    def __init__(self, tasks: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(256, 10) for _ in range(tasks))


def batch(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    root = Path(os.environ.get("TRANSFERKIT_DATA", "../shared/data"))
    d = np.load(root / "mnist" / "mnist.npz")
    return torch.from_numpy(d["x_test"][:n]).float() / 255, torch.from_numpy(d["y_test"][:n]).long()


def losses_of(net: Net, x, y):
    z = net.trunk(x)
    return z, [F.cross_entropy(h(z), (y + t) % 10) for t, h in enumerate(net.heads)]


def step_transferkit(net: Net, x, y, agg) -> None:
    for p in net.parameters():
        p.grad = None
    _, L = losses_of(net, x, y)
    if agg is None:
        sum(L).backward()
    else:
        aggregated_backward(L, list(net.trunk.parameters()), list(net.heads.parameters()), agg)


def step_torchjd(net: Net, x, y, agg) -> None:
    for p in net.parameters():
        p.grad = None
    z, L = losses_of(net, x, y)
    shared = list(net.trunk.parameters())
    mtl_backward(L, features=z, shared_params=shared, tasks_params=[list(h.parameters()) for h in net.heads])
    jac_to_grad(shared, agg)


def grads(net: Net) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in net.parameters()])


def compare(tasks: int, steps: int, x, y) -> list[dict]:
    rows = []
    for name, (ours, theirs, deterministic) in methods().items():
        torch.manual_seed(0)
        net = Net(tasks)
        for _ in range(10):  # warm-up
            step_transferkit(net, x, y, ours)
            step_torchjd(net, x, y, theirs)
        t_ours, t_theirs = [], []
        for _ in range(steps):
            t0 = time.perf_counter()
            step_transferkit(net, x, y, ours)
            t_ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            step_torchjd(net, x, y, theirs)
            t_theirs.append(time.perf_counter() - t0)
        check_tasks = tasks if deterministic else 2
        torch.manual_seed(1)
        net = Net(check_tasks)
        step_transferkit(net, x, y, ours)
        g_ours = grads(net)
        step_torchjd(net, x, y, theirs)
        g_theirs = grads(net)
        diff = float((g_ours - g_theirs).abs().max() / g_theirs.abs().max())
        ms_ours, ms_theirs = 1000 * statistics.median(t_ours), 1000 * statistics.median(t_theirs)
        rows.append({"tasks": tasks, "method": name, "transferkit_ms": round(ms_ours, 2), "torchjd_ms": round(ms_theirs, 2),
                     "ratio": round(ms_ours / ms_theirs, 3), "update_rel_diff": f"{diff:.1e}",
                     "checked_on_tasks": check_tasks})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--out", default="benchmarks/results/multitask_torchjd.csv")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    x, y = batch()
    rows = compare(3, args.steps, x, y) + compare(10, args.steps, x, y)
    import csv

    with open(args.out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"\ntorchjd {torchjd.__version__ if hasattr(torchjd, '__version__') else ''}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")
    print("| tasks | method | transferkit ms | TorchJD ms | ratio | update rel. diff |\n| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['tasks']} | {r['method']} | {r['transferkit_ms']} | {r['torchjd_ms']} | {r['ratio']} | "
              f"{r['update_rel_diff']} (T={r['checked_on_tasks']}) |")
    worst = max(rows, key=lambda r: r["ratio"])
    print(f"\nworst ratio: {worst['ratio']} ({worst['method']}, {worst['tasks']} tasks)")


if __name__ == "__main__":
    main()
