"""transferkit: knowledge transfer between neural-network tasks.

f(x) = g(h(x)): a source backbone h, a head g for the target task, and a strategy for adapting them.
"""

from transferkit.api import evaluate_run, load_run, predict, rank, train
from transferkit.backbones import create_backbone, list_backbones
from transferkit.config import RunConfig, StrategyConfig, load_config
from transferkit.data import load_dataset
from transferkit.engine.trainer import Trainer
from transferkit.errors import TransferkitError
from transferkit.finetune import Compose, Strategy, create_strategy
from transferkit.compare import compare
from transferkit.config import ContinualConfig
from transferkit.continual import create_continual_strategy
from transferkit.runs.continual import run_continual
from transferkit.runs.learner import train_stream
from transferkit.runs.multitask import run_multitask
from transferkit.runs.meta import run_meta
from transferkit.config import MetaConfig
from transferkit.config import FederatedConfig
from transferkit.federated import run_federated
from transferkit.multitask.weighters import create_weighter
from transferkit.model import Output, TransferModel

__version__ = "0.1.0"
__all__ = ["compare", "rank", "StrategyConfig", "train", "load_run", "evaluate_run", "predict", "create_backbone", "list_backbones", "RunConfig",
           "load_config", "load_dataset", "Trainer", "TransferkitError", "Compose", "Strategy", "create_strategy",
           "Output", "TransferModel", "ContinualConfig", "create_continual_strategy", "train_stream", "run_continual",
           "run_multitask", "create_weighter", "run_meta", "MetaConfig", "run_federated", "FederatedConfig"]
