"""``transferkit federated``: a federated run from a config, with its centralised and local-only baselines.

Order: validate the config and check that Flower is installed, load and split the data, build the model
(all before the run directory is touched); then the two baselines with the one Trainer, then Flower's
simulation, then the run directory's files (config.yaml, metrics.jsonl, trainable.safetensors,
model.safetensors, summary.json, report.md, accuracy.png).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from transferkit.api import default_run_dir, prepare_run_dir
from transferkit.config import FederatedConfig, dump_config, load_config, parse_config
from transferkit.engine import checkpoint as ckpt
from transferkit.errors import TransferkitError
from transferkit.federated.arrays import array_bytes, get_arrays, model_bytes, set_arrays
from transferkit.federated.client import Job, make_client_app
from transferkit.federated.privacy import privacy_spent
from transferkit.federated.server import RoundLog, make_server_app, sampled_clients
from transferkit.federated.setup import Subset, accuracy, build, load_pool, local_settings, make_shares, resolved, train_rows
from transferkit.federated.split import label_counts, label_skew
from transferkit.finetune.saved import task_type
from transferkit.report.federated import federated_report

FLOWER_MISSING = "transferkit federated needs Flower; install it with `pip install 'transferkit[federated]'`."


def require_flower() -> None:
    """Raise one sentence naming the extra to install when Flower (``flwr``) cannot be imported."""
    try:
        import flwr  # noqa: F401
    except ImportError:
        raise TransferkitError(FLOWER_MISSING) from None


@dataclass
class FederatedResult:
    run_dir: Path
    summary: dict
    rounds: list[dict]


def run_federated(config: FederatedConfig | dict | str | Path, out: str | Path | None = None, overwrite: bool = False,
                  overrides: list[str] | None = None, on_round=lambda r: None) -> FederatedResult:
    """Federated transfer learning with Flower's simulation engine: ``federated.clients`` clients, each with a
    Dirichlet(``alpha``) label-skewed share of ``data.dataset``, start from ``model.weights`` and train what
    the config's strategy trains (only those tensors travel); FedAvg or FedProx, optionally with DP.
    Also trains the centralised upper bound and each client's local-only lower bound.

    Example:
        >>> res = run_federated("examples/federated/usps_fedavg.yaml", out="runs/fed")
        >>> res.summary["test/accuracy"], res.summary["centralised/accuracy"]
    """
    require_flower()
    if isinstance(config, (str, Path)):
        cfg = load_config(config, overrides, schema=FederatedConfig)
    elif isinstance(config, dict):
        cfg = parse_config(config, overrides=overrides, schema=FederatedConfig)
    else:
        cfg = config
    cfg = resolved(cfg)
    pool, separate_test = load_pool(cfg)
    num_classes = cfg.model.num_classes or task_type(cfg).outputs(pool.targets)
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"num_classes": num_classes})})
    shares = make_shares(pool.targets, cfg)
    test = separate_test if separate_test is not None else Subset(pool, shares.test)
    model, _, names = build(cfg)
    out = Path(out or default_run_dir(cfg.name))
    prepare_run_dir(out, overwrite, resume=False)
    (out / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")

    t0 = time.perf_counter()
    baselines = train_baselines(cfg, pool, shares, test)
    t1 = time.perf_counter()
    log = _simulate(cfg, shares, model, names, test, out, on_round)
    t2 = time.perf_counter()

    final = log.arrays or get_arrays(model, names)
    set_arrays(model, final)
    save_file({n: torch.as_tensor(a).contiguous() for n, a in final.items()}, str(out / "trainable.safetensors"))
    ckpt.save_weights(model, out / ckpt.MODEL_FILE)
    summary = _summary(cfg, pool, shares, test, model, final, log, baselines) | {
        "baseline_seconds": round(t1 - t0, 2), "federated_seconds": round(t2 - t1, 2)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    federated_report(out, summary, log.rounds)
    return FederatedResult(out, summary, log.rounds)


def train_baselines(cfg: FederatedConfig, pool, shares, test) -> dict:
    """The same trainable tensors trained on the union of the clients' training rows (centralised), and on
    each client's rows alone (local-only), each from the same start and tested on the global test rows."""
    f, bs = cfg.federated, cfg.train.eval_batch_size
    epochs = f.baseline_epochs or f.rounds * f.local_epochs

    def fit(rows) -> float:
        model, strategy, names = build(cfg)
        train_rows(model, strategy, Subset(pool, rows), local_settings(cfg, epochs, cfg.train.seed), names)
        return accuracy(model, test, bs)

    central = fit(np.sort(np.concatenate(shares.train)))
    local = [fit(rows) for rows in shares.train]
    return {"epochs": epochs, "centralised": central, "local_only": local}


def _simulate(cfg: FederatedConfig, shares, model, names, test, out: Path, on_round) -> RoundLog:
    """Run Flower's simulation engine (Ray) with one virtual node per client; the metrics of each round are
    appended to ``metrics.jsonl`` as the server closes it."""
    from flwr.simulation import run_simulation

    f, log, whole = cfg.federated, RoundLog(), model_bytes(model)

    def evaluate_global(arrays: dict) -> dict:
        set_arrays(model, arrays)
        return {"test/accuracy": accuracy(model, test, cfg.train.eval_batch_size), "model_bytes": whole}

    def record(r: dict) -> None:
        if r["round"] > 0:
            with open(out / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(r) + "\n")
        on_round(r)

    job = Job(cfg, shares, uuid.uuid4().hex)
    server = make_server_app(f, get_arrays(model, names), evaluate_global, log, record)
    _worker_environment()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    backend = {"client_resources": {"num_cpus": f.cpus_per_client, "num_gpus": 0.0},
               "init_args": {"num_cpus": max(cpus, int(np.ceil(f.cpus_per_client))), "include_dashboard": False}}
    flwr_log = logging.getLogger("flwr")
    level = flwr_log.level
    flwr_log.setLevel(logging.WARNING)
    try:
        run_simulation(server_app=server, client_app=make_client_app(job), num_supernodes=f.clients,
                       backend_config=backend)
    finally:
        flwr_log.setLevel(level)
    if log.error is not None:
        raise log.error
    if len(log.rounds) != f.rounds:
        raise TransferkitError(f"The federated simulation finished {len(log.rounds)} of {f.rounds} rounds (a client "
                               "failed; its error is in the log above); fix that error and run again.")
    return log


def _worker_environment() -> None:
    """What the simulation's worker processes inherit: this transferkit on the import path, one thread
    each, no telemetry."""
    src = str(Path(__file__).resolve().parents[2])
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if src not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([src] + [p for p in paths if p])
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")


def _summary(cfg: FederatedConfig, pool, shares, test, model, final: dict, log: RoundLog, baselines: dict) -> dict:
    f = cfg.federated
    y = np.asarray(pool.targets)
    classes = int(cfg.model.num_classes)
    accs = [r["test/accuracy"] for r in log.rounds]
    sent = [c["bytes_sent"] for r in log.rounds for c in r["clients"] if "bytes_sent" in c]
    whole = model_bytes(model)
    local = baselines["local_only"]
    final_acc = accs[-1] if accs else float("nan")
    return {
        "name": cfg.name, "dataset": cfg.data.dataset, "strategy": cfg.strategy.name, "aggregation": f.strategy,
        "proximal_mu": f.proximal_mu,
        "dp": f.dp.model_dump() | privacy_spent(f.dp.noise_multiplier, f.rounds, f.dp.delta, f.fraction_fit,
                                                [sum("bytes_sent" in c for c in r["clients"]) for r in log.rounds],
                                                sampled_clients(f))
        if f.dp else None,
        "clients": f.clients, "alpha": f.alpha, "rounds": f.rounds, "local_epochs": f.local_epochs,
        "client_train_examples": [len(s) for s in shares.train], "client_test_examples": [len(s) for s in shares.local_test],
        "client_label_counts": label_counts(y, shares.train, classes).tolist(),
        "label_skew": round(label_skew(y, [np.concatenate([a, b]) for a, b in zip(shares.train, shares.local_test)], classes), 4),
        "test_examples": len(test),
        "trainable_tensors": list(final), "trainable_parameters": int(sum(np.asarray(a).size for a in final.values())),
        "exchanged_bytes": array_bytes(final), "model_bytes": whole,
        "max_bytes_sent_per_client_round": max(sent) if sent else 0,
        "bytes_fraction": round(max(sent) / whole, 6) if sent else 0.0,
        "initial/test/accuracy": log.initial["test/accuracy"] if log.initial else None,
        "test/accuracy": final_acc, "accuracy_per_round": accs,
        "centralised/accuracy": baselines["centralised"], "local_only/accuracy": local,
        "local_only/mean_accuracy": float(np.mean(local)), "baseline_epochs": baselines["epochs"],
        "gap_to_centralised": round(baselines["centralised"] - final_acc, 6),
        "beats_local_only": bool(final_acc > float(np.mean(local))),
    }
