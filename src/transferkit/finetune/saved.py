"""A run's model from its config, and a trained run's model from its directory (``config.yaml`` +
``model.safetensors``): what ``api.load_run`` returns and what KD distils from. It sits beside the
strategies (a LoRA or adapter run is rebuilt with its strategy's layers) and below the API."""

from __future__ import annotations

from pathlib import Path

from accelerate.utils import set_seed

from transferkit.backbones import create_backbone
from transferkit.backbones.weights import load_weights
from transferkit.config import RunConfig, load_config
from transferkit.errors import TransferkitError
from transferkit.heads import create_head
from transferkit.model import TransferModel
from transferkit.tasks import TaskType, create_task

MODEL_FILE = "model.safetensors"


def task_type(cfg: RunConfig) -> TaskType:
    """The task type a run's config declares (``model.task`` with ``model.task_args``)."""
    return create_task(cfg.model.task, **cfg.model.task_args)


def build_model(cfg: RunConfig, num_classes: int) -> TransferModel:
    """The untrained model a config describes (seeded with ``train.seed``), of its task type; with
    ``model.source_head`` its head starts from the one in ``model.weights``."""
    m = cfg.model
    set_seed(cfg.train.seed)
    backbone = create_backbone(m.backbone, weights=m.weights, **m.backbone_args)
    head = create_head(m.head, backbone.num_features, num_classes, **m.head_args)
    model = TransferModel(backbone, head, task_type=task_type(cfg))
    if m.source_head:
        state = head_state(m.weights, model)
        if state is None:
            raise TransferkitError(f"model.source_head is set, but '{m.weights}' holds no head of this shape "
                                   f"({num_classes} outputs); unset model.source_head or give a model file with the "
                                   "same labels.")
        model.heads[model.default_task].load_state_dict(state)
    return model


def head_state(weights: str | None, model: TransferModel) -> dict | None:
    """The default head's tensors in ``weights`` (a transferkit model file) when they fit ``model``'s
    head — the label spaces match — else None."""
    if not weights or not Path(weights).is_file() or Path(weights).suffix not in {".safetensors", ".pt", ".pth"}:
        return None
    from transferkit.backbones.weights import read_state_dict

    prefix = f"heads.{model.default_task}."
    head = {k[len(prefix):]: v for k, v in read_state_dict(weights).items() if k.startswith(prefix)}
    own = model.heads[model.default_task].state_dict()
    fits = head.keys() == own.keys() and all(v.shape == own[k].shape for k, v in head.items())
    return head if fits else None


def load_model(run_dir: str | Path) -> tuple[RunConfig, TransferModel]:
    """Rebuild a trained run's model from ``config.yaml`` and load ``model.safetensors`` (eval mode)."""
    from transferkit.finetune import STRATEGIES, create_strategy  # the registry imports the strategies, KD among them

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise TransferkitError(f"'{run_dir}' is not a run directory (no config.yaml); give the folder `train` wrote.")
    cfg = load_config(run_dir / "config.yaml")
    weights = cfg.model.weights if cfg.model.backbone == "hf_text" else None
    # the run's own file holds every weight: no source weights (but a text encoder's folder) nor source head
    model = build_model(cfg.model_copy(update={"model": cfg.model.model_copy(update={"weights": weights,
                                                                                     "source_head": False})}),
                        cfg.model.num_classes)
    if any(STRATEGIES.get(n.strip()).changes_structure for n in cfg.strategy.name.split("+")):
        model = create_strategy(cfg.strategy.name, **cfg.strategy.args).prepare_model(model)  # e.g. LoRA layers
    load_weights(model, run_dir / MODEL_FILE)
    return cfg, model.eval()
