"""The Flower ClientApp: each simulated client trains the exchanged tensors on its own rows and sends
back those tensors alone, with its row count and what they weigh."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from transferkit.config import FederatedConfig
from transferkit.federated.arrays import array_bytes, set_arrays
from transferkit.federated.setup import Shares, Subset, accuracy, build, load_pool, local_settings, train_rows

_CLIENTS: dict[tuple[str, int], "ClientState"] = {}  # per worker process: each client's data and model, built once


@dataclass
class Job:
    """What every client needs, sent to the simulation's worker processes: the resolved config, the row
    indices of every share, and a token naming the run (the key of each worker's cache)."""

    cfg: FederatedConfig
    shares: Shares
    token: str


@dataclass
class ClientState:
    model: object
    strategy: object
    names: list[str]
    train: object
    test: object
    rounds: dict = field(default_factory=dict)


def client_state(job: Job, client: int) -> ClientState:
    """Client ``client``'s rows, model and strategy, built on first use in this process."""
    key = (job.token, client)
    if key not in _CLIENTS:
        torch.set_num_threads(1)
        pool, _ = load_pool(job.cfg)
        model, strategy, names = build(job.cfg)
        _CLIENTS[key] = ClientState(model, strategy, names, Subset(pool, job.shares.train[client]),
                                    Subset(pool, job.shares.local_test[client]))
    return _CLIENTS[key]


def named(record) -> dict:
    """An ArrayRecord as ``{name: numpy array}``, in its order."""
    return dict(zip(record.keys(), record.to_numpy_ndarrays(), strict=True))


def to_record(arrays: dict):
    """``{name: numpy array}`` as a Flower ArrayRecord keeping the names."""
    from flwr.app import Array, ArrayRecord

    return ArrayRecord({n: Array(a) for n, a in arrays.items()})


def make_client_app(job: Job):
    """A ``flwr.clientapp.ClientApp`` whose train and evaluate functions read ``job``."""
    from flwr.app import Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.clientapp.mod import fixedclipping_mod

    dp = job.cfg.federated.dp
    app = ClientApp()

    # client-side DP: Flower's mod clips what train() returns against what it received
    @app.train(mods=[fixedclipping_mod] if dp is not None and dp.side == "client" else None)
    def train(msg: Message, context) -> Message:
        client = int(context.node_config["partition-id"])
        st = client_state(job, client)
        anchors = named(msg.content["arrays"])  # the round's global tensors
        set_arrays(st.model, anchors)
        config = msg.content["config"]
        rnd, mu = int(config["server-round"]), float(config.get("proximal-mu", 0.0))
        settings = local_settings(job.cfg, job.cfg.federated.local_epochs, job.cfg.train.seed + 1000 * rnd + client)
        trained = train_rows(st.model, st.strategy, st.train, settings, st.names, anchors, mu)
        metrics = MetricRecord({"num-examples": len(st.train), "dp-weight": 1, "partition-id": client,
                                "bytes-sent": array_bytes(trained),
                                "arrays-sent": len(trained),
                                "local-accuracy": accuracy(st.model, st.test, job.cfg.train.eval_batch_size)})
        return Message(content=RecordDict({"arrays": to_record(trained), "metrics": metrics}),
                       reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context) -> Message:
        client = int(context.node_config["partition-id"])
        st = client_state(job, client)
        set_arrays(st.model, named(msg.content["arrays"]))
        metrics = MetricRecord({"num-examples": len(st.test), "dp-weight": 1, "partition-id": client,
                                "accuracy": accuracy(st.model, st.test, job.cfg.train.eval_batch_size)})
        return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)

    return app
