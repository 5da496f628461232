"""Split-MNIST class-IL with transferkit and with Avalanche side by side, in one process:
the same MLP 784-100-100-10 (each library's own implementation, same initial weights), SGD,
batch 10, one epoch per task, same buffer sizes and loss weights, evaluation of every task after
each (batch 1000), no loggers. After a warm-up run of each, every strategy runs on the two
libraries alternately (--repeats times) and each keeps its best wall time. Reports the ratio
transferkit / Avalanche and the final average class-IL accuracy of both.

Avalanche lives only in the benchmark's own environment (see requirements.txt):
    make bench-avalanche          # creates .venv-bench, then runs this file

Same buffer: Avalanche's Replay fills an experience-balanced memory at the end of each
experience (its default) and its DER a class-balanced one with the logits of the experience's
final model, drawing one memory batch for both DER++ terms; transferkit runs ER with
fill=task_end and DER++ with fill=task_end, single_batch=True, which are the same policies
(BENCHMARKS.md's protocol table uses the papers' online reservoir instead).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from protocols import SPLIT, mlp, mnist, settings, stream, strategy_args  # noqa: E402

from transferkit.continual import create_continual_strategy  # noqa: E402
from transferkit.runs.learner import train_stream  # noqa: E402

# strategy -> (transferkit name, buffer, avalanche factory)
CASES = {
    "Naive": ("naive", None),
    "EWC": ("ewc", None),
    "LwF": ("lwf", None),
    "ER(200)": ("er", 200),
    "DER++(200)": ("derpp", 200),
}
EWC_WEIGHT = 90.0  # the Split-MNIST oEWC weight of the protocol, used for plain EWC on both sides


def avalanche_mlp(seed: int) -> nn.Module:
    """Avalanche's own MLP with the architecture of protocols.mlp and the same initial weights."""
    from avalanche.models import SimpleMLP

    model = SimpleMLP(num_classes=10, input_size=784, hidden_size=100, hidden_layers=2, drop_rate=0.0)
    ours = [m for m in mlp(seed).modules() if isinstance(m, nn.Linear)]
    theirs = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(ours) == len(theirs) == 3
    with torch.no_grad():
        for a, b in zip(ours, theirs):
            b.weight.copy_(a.weight)
            b.bias.copy_(a.bias)
    return model


def avalanche_run(case: str, seed: int, train, test) -> tuple[float, float]:
    from avalanche.benchmarks.scenarios.supervised import class_incremental_benchmark
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training.plugins import EvaluationPlugin
    from avalanche.training.supervised import DER, EWC, LwF, Naive, Replay

    class Tensors(torch.utils.data.TensorDataset):
        def __init__(self, ds):
            super().__init__(ds.x, ds.y)
            self.targets = ds.y.tolist()

    bench = class_incremental_benchmark({"train": Tensors(train), "test": Tensors(test)},
                                        class_order=list(range(10)), num_experiences=5)
    name, buffer = CASES[case]
    lr, kw = SPLIT[("oewc" if name == "ewc" else name, buffer)]
    model = avalanche_mlp(seed)
    common = dict(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=lr), criterion=nn.CrossEntropyLoss(),
                  train_mb_size=10, train_epochs=1, eval_mb_size=1000, device="cpu",
                  evaluator=EvaluationPlugin(accuracy_metrics(stream=True), loggers=[]))
    if name == "naive":
        strat = Naive(**common)
    elif name == "ewc":
        strat = EWC(ewc_lambda=EWC_WEIGHT, mode="separate", **common)
    elif name == "lwf":
        strat = LwF(alpha=kw["weight"], temperature=kw["temperature"], **common)
    elif name == "er":
        strat = Replay(mem_size=buffer, **common)
    else:
        strat = DER(mem_size=buffer, batch_size_mem=kw["batch_size"], alpha=kw["weight"], beta=kw["replay_weight"],
                    **common)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    for exp in bench.train_stream:
        strat.train(exp)
        res = strat.eval(bench.test_stream)
    seconds = time.perf_counter() - t0
    acc = next(v for k, v in res.items() if k.startswith("Top1_Acc_Stream/eval_phase/test_stream"))
    return seconds, 100 * float(acc)


SAME_BUFFER = {"er": {"fill": "task_end"}, "derpp": {"fill": "task_end", "single_batch": True}}


def transferkit_run(case: str, seed: int, s) -> tuple[float, float]:
    name, buffer = CASES[case]
    lr, kw = SPLIT[("oewc" if name == "ewc" else name, buffer)]
    kw = {"weight": EWC_WEIGHT} if name == "ewc" else kw | SAME_BUFFER.get(name, {})
    strategy = create_continual_strategy(name, **strategy_args(name, buffer, kw))
    t0 = time.perf_counter()
    res = train_stream(mlp(seed), strategy, s, settings("split", lr, seed), progress=False)
    return time.perf_counter() - t0, 100 * res.summary()["class_il"]["average_accuracy"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--only", default="")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads for both libraries; at batch 10 both run fastest on one")
    ap.add_argument("--out", default="benchmarks/results/continual_vs_avalanche.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    train, test = mnist()
    s = stream("split", train, test)
    rows = []
    transferkit_run("Naive", 0, s)  # warm-up: first-call costs (lazy imports, allocator) hit neither side
    avalanche_run("Naive", 0, train, test)
    for case in CASES:
        if a.only and case not in a.only.split(","):
            continue
        for seed in range(a.seeds):
            tk, av = [], []
            for _ in range(a.repeats):  # alternate the two libraries; keep each one's best time
                tk.append(transferkit_run(case, seed, s))
                av.append(avalanche_run(case, seed, train, test))
            (tk_s, tk_acc), (av_s, av_acc) = min(tk), min(av)
            row = {"strategy": case, "seed": seed, "transferkit_s": round(tk_s, 1), "avalanche_s": round(av_s, 1),
                   "ratio": round(tk_s / av_s, 3), "transferkit_acc": round(tk_acc, 2), "avalanche_acc": round(av_acc, 2)}
            rows.append(row)
            print(row, flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rows, indent=1))
    print("| strategy | transferkit s | Avalanche s | ratio | transferkit class-IL % | Avalanche class-IL % |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['strategy']} | {r['transferkit_s']} | {r['avalanche_s']} | {r['ratio']} | {r['transferkit_acc']} | "
              f"{r['avalanche_acc']} |")


if __name__ == "__main__":
    main()
