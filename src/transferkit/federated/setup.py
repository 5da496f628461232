"""A federated run's data and models, built the same way in the driver and in each simulated client:
the pool of labelled rows, its global test rows, each client's train / local-test rows, and the
model with the config's strategy (what trains is what is exchanged)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from transferkit.config import FederatedConfig, TrainSettings
from transferkit.data import Subset, data_dir, load_dataset, stratified_split
from transferkit.engine.evaluate import evaluate
from transferkit.engine.trainer import Trainer, check_labels
from transferkit.errors import TransferkitError
from transferkit.federated.arrays import get_arrays, set_arrays, trainable_names
from transferkit.federated.proximal import Proximal
from transferkit.federated.split import dirichlet_label_split
from transferkit.finetune import Compose, Strategy, create_strategy
from transferkit.finetune.saved import build_model, task_type
from transferkit.model import TransferModel


@dataclass
class Shares:
    """Row indices into the pool (``data.dataset``): the global test rows (empty when ``data.test`` is a
    separate dataset) and each client's training and local-test rows."""

    test: np.ndarray
    train: list[np.ndarray]
    local_test: list[np.ndarray]


def make_shares(targets: np.ndarray, cfg: FederatedConfig) -> Shares:
    """Global test rows (stratified, ``data.test_fraction``, unless ``data.test`` is given), the rest split
    over the clients by ``dirichlet_label_split``, and each client's rows split into train / local test
    (stratified within the client, ``federated.local_test_fraction``). Seeded by ``data.seed``."""
    d, f = cfg.data, cfg.federated
    y = np.asarray(targets)
    pool, test = (np.arange(len(y)), np.array([], dtype=np.int64)) if d.test else stratified_split(y, d.test_fraction, d.seed)
    parts = dirichlet_label_split(y[pool], f.clients, f.alpha, d.seed, min_rows=f.min_rows)
    train, local = [], []
    for k, part in enumerate(parts):
        rows = pool[part]
        kept, taken = stratified_split(y, f.local_test_fraction, d.seed + 1 + k, pool=rows)
        train.append(kept)
        local.append(taken)
    return Shares(test, train, local)


def resolved(cfg: FederatedConfig) -> FederatedConfig:
    """The config with its data folder and weights file as absolute paths, so that simulated clients
    (other processes, maybe another working directory) read the same files."""
    d, m = cfg.data, cfg.model
    weights = m.weights
    if weights and Path(weights).exists():
        weights = str(Path(weights).resolve())
    data = d.model_copy(update={"data_dir": str(data_dir(d.data_dir).resolve())})
    return cfg.model_copy(update={"data": data, "model": m.model_copy(update={"weights": weights})})


def load_pool(cfg: FederatedConfig) -> tuple[Dataset, Dataset | None]:
    """``data.dataset`` (the rows the clients share) and ``data.test`` when given, checked against the task."""
    d, task = cfg.data, task_type(cfg)

    def load(spec: str) -> Dataset:
        ds = load_dataset(spec, d.data_dir, d.image_size, d.channels, task=task.name, preprocess=d.preprocess)
        check_labels(ds, task, cfg.model.num_classes, f"'{spec}'")
        return ds

    return load(d.dataset), (load(d.test) if d.test else None)


def build(cfg: FederatedConfig) -> tuple[TransferModel, Strategy, list[str]]:
    """The model (``model.weights`` as the backbone, seeded head) with the strategy's layers in place, the
    strategy, and the names of the tensors it trains: what a client receives and sends."""
    strategy = create_strategy(cfg.strategy.name, **cfg.strategy.args)
    model = strategy.prepare_model(build_model(cfg, cfg.model.num_classes))
    names = trainable_names(model, strategy, cfg.train.epochs, cfg.train.lr)
    trained = set(names)
    for prefix, module in model.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and any(
                f"{prefix}.{n}" in trained for n, _ in module.named_parameters()):
            raise TransferkitError(
                f"Strategy '{cfg.strategy.name}' trains the BatchNorm layer '{prefix}', whose running statistics the "
                "clients would not share (only trained parameters are exchanged); use feature_extraction, adapters or "
                "lora, or a backbone without BatchNorm.")
    return model, strategy, names


def local_settings(cfg: FederatedConfig, epochs: int, seed: int) -> TrainSettings:
    """``train`` with the given epochs and seed, without validation-based selection (there is none)."""
    return cfg.train.model_copy(update={"epochs": epochs, "seed": seed, "restore_best": False, "patience": None})


def train_rows(model: TransferModel, strategy: Strategy, rows: Dataset, settings: TrainSettings,
               names: list[str], anchors: dict[str, np.ndarray] | None = None, mu: float = 0.0) -> dict[str, np.ndarray]:
    """Train with the one Trainer (FedProx's term added as a strategy part when ``mu`` > 0) and return the
    trained tensors of ``names``."""
    if mu > 0:
        strategy = Compose([strategy, Proximal(mu, anchors)])
    Trainer(settings, progress=False).fit(model, strategy, rows)
    return get_arrays(model, names)


def accuracy(model: TransferModel, rows: Dataset, batch_size: int) -> float:
    return float(evaluate(model, rows, batch_size)["accuracy"]) if len(rows) else float("nan")


__all__ = ["Shares", "Subset", "accuracy", "build", "load_pool", "local_settings", "make_shares", "resolved",
           "set_arrays", "train_rows"]
