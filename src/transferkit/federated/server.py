"""The Flower ServerApp: Flower's own FedAvg or FedProx (optionally inside its fixed-clipping DP
wrappers) started on the initial trainable tensors; every round the global model is tested on the
global test rows and what each client sent is recorded from the replies the server received."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from transferkit.config import FederatedSettings


@dataclass
class RoundLog:
    """What the server saw, filled while the simulation runs: one record per round, the last global
    arrays, and an error raised inside the server (re-raised by the caller)."""

    rounds: list[dict] = field(default_factory=list)
    initial: dict | None = None
    arrays: dict | None = None
    error: BaseException | None = None
    _train: list[dict] = field(default_factory=list)
    _eval: list[dict] = field(default_factory=list)

    def received_train(self, records: list) -> None:
        """Each training reply as it reached the server: its client, the names, shapes and bytes of the
        arrays it carried, and its metrics."""
        for rec in records:
            metrics = dict(rec["metrics"])
            arrays = {name: arr for rr in rec.array_records.values() for name, arr in zip(rr.keys(), rr.to_numpy_ndarrays())}
            self._train.append({"client": int(metrics["partition-id"]), "train_examples": int(metrics["num-examples"]),
                                "bytes_sent": int(sum(a.nbytes for a in arrays.values())),
                                "bytes_reported": int(metrics["bytes-sent"]), "arrays_sent": len(arrays),
                                "shapes": {n: list(a.shape) for n, a in arrays.items()},
                                "local_model/local_accuracy": float(metrics["local-accuracy"])})

    def received_eval(self, records: list) -> None:
        for rec in records:
            metrics = dict(rec["metrics"])
            self._eval.append({"client": int(metrics["partition-id"]), "local_accuracy": float(metrics["accuracy"]),
                               "local_test_examples": int(metrics["num-examples"])})

    def close_round(self, rnd: int, metrics: dict) -> dict:
        """The round's record: the global model's metrics and one entry per client that took part."""
        clients: dict[int, dict] = {}
        for part in self._train + self._eval:
            clients.setdefault(part["client"], {}).update(part)
        record = {"round": rnd} | metrics | {"clients": [clients[k] for k in sorted(clients)]}
        self._train, self._eval = [], []
        if rnd == 0:
            self.initial = record
        else:
            self.rounds.append(record)
        return record


def sampled_clients(f: FederatedSettings) -> int:
    """Clients sampled per training round (FedAvg's own rule with ``min_train_nodes`` set to this)."""
    return max(1, int(f.clients * f.fraction_fit))


def make_strategy(f: FederatedSettings, log: RoundLog):
    """Flower's FedAvg or FedProx, wrapped in ``DifferentialPrivacyServerSideFixedClipping`` (or, with
    ``dp.side: client``, ``DifferentialPrivacyClientSideFixedClipping``, whose clients clip with Flower's
    ``fixedclipping_mod``) when ``dp`` is set."""
    from flwr.serverapp.strategy import (DifferentialPrivacyClientSideFixedClipping,
                                         DifferentialPrivacyServerSideFixedClipping, FedAvg, FedProx)
    from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

    def on_train(records, key):
        log.received_train(records)
        return aggregate_metricrecords(records, key)

    def on_eval(records, key):
        log.received_eval(records)
        return aggregate_metricrecords(records, key)

    n = sampled_clients(f)
    # Under DP the noise (std noise_multiplier x clipping_norm / n) is calibrated for a plain mean of the
    # clipped updates, so each client then weighs the same ("dp-weight" 1), not by its examples
    common = dict(weighted_by_key="dp-weight" if f.dp is not None else "num-examples",
                  fraction_train=f.fraction_fit, min_train_nodes=n, fraction_evaluate=1.0,
                  min_evaluate_nodes=f.clients, min_available_nodes=f.clients,
                  train_metrics_aggr_fn=on_train, evaluate_metrics_aggr_fn=on_eval)
    strategy = FedProx(proximal_mu=f.proximal_mu, **common) if f.strategy == "fedprox" else FedAvg(**common)
    if f.dp is not None:
        wrapper = (DifferentialPrivacyClientSideFixedClipping if f.dp.side == "client"
                   else DifferentialPrivacyServerSideFixedClipping)
        strategy = wrapper(strategy, f.dp.noise_multiplier, f.dp.clipping_norm, n)
    return strategy


def make_server_app(f: FederatedSettings, initial: dict[str, np.ndarray],
                    evaluate_global: Callable[[dict[str, np.ndarray]], dict], log: RoundLog,
                    on_round: Callable[[dict], None] = lambda r: None):
    """A ``flwr.serverapp.ServerApp`` that runs ``f.rounds`` rounds from ``initial`` and fills ``log``."""
    from flwr.app import MetricRecord
    from flwr.serverapp import ServerApp

    from transferkit.federated.client import named, to_record

    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        def global_eval(rnd: int, arrays) -> MetricRecord:
            metrics = evaluate_global(named(arrays))
            on_round(log.close_round(rnd, metrics))
            return MetricRecord(metrics)

        try:
            result = make_strategy(f, log).start(grid=grid, initial_arrays=to_record(initial), num_rounds=f.rounds,
                                                 evaluate_fn=global_eval)
            log.arrays = named(result.arrays)
        except BaseException as e:  # re-raised by the caller: the simulation would only log it
            log.error = e

    return app
