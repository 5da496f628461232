"""The candidates that ``transferkit rank`` scores: what a candidate string names, and its model.

A candidate is one of
  - a run directory written by ``transferkit train`` (``config.yaml`` + ``model.safetensors``): its
    backbone, and its classifier head for LEEP / NCE (the head's classes are the run's source classes);
  - ``BACKBONE=WEIGHTS``: a registered backbone (``small_cnn``, ``resnet18``, ``timm/<name>``, ``hf_text``)
    with a weights file (safetensors or a plain torch state dict), ``imagenet`` (torchvision, from the
    torch cache) or, for ``hf_text``, a Hugging Face folder;
  - a Hugging Face text-encoder folder (holding ``config.json``);
  - ``random:BACKBONE``: the architecture with random weights (the from-scratch reference).

Everything is checked (files exist, weights fit, the backbone takes the target's inputs) before any
feature is extracted; each problem is one sentence naming the candidate and the fix.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from transferkit.backbones import BACKBONES, Backbone, create_backbone
from transferkit.backbones.hf import minilm_path
from transferkit.data import Subset
from transferkit.errors import TransferkitError

RANDOM = "random:"
RANDOM_SEED = 0  # the random reference's weights
DEFAULT_VIEW = (None, 3, "none")  # (image_size, channels, preprocess): the target read as it is
SYNTAX = ("a run directory, BACKBONE=WEIGHTS (e.g. small_cnn=w.safetensors, resnet18=imagenet), a Hugging Face "
          "folder or random:BACKBONE")


@dataclass(frozen=True)
class Candidate:
    """One parsed candidate.

    Attributes:
        spec: the string as given.
        kind: ``run``, ``weights``, ``hf`` or ``random``.
        backbone: the backbone's registered name.
        weights: the weights file / folder / ``imagenet`` (None: random, or a run's own file).
        args: the backbone's keyword arguments (a run's from its config; else filled from the target data).
        run_dir: the run directory (kind ``run``).
        view: how the target is read for it: ``(image_size, channels, preprocess)``.
        source: the data the candidate was trained on (a run's), for the domain distance.
        reference: whether it is the random reference of another candidate's architecture.
    """

    spec: str
    kind: str
    backbone: str
    weights: str | None = None
    args: dict = field(default_factory=dict)
    run_dir: Path | None = None
    view: tuple = DEFAULT_VIEW
    source: str | None = None
    reference: bool = False

    def files(self) -> list[Path]:
        """The files the candidate's weights come from (what its feature cache is keyed on)."""
        if self.kind == "run":  # a text encoder's run also reads its folder's tokenizer and config files
            folder = Path(self.args["path"]) if isinstance(self.args.get("path"), str) else None
            extra = sorted(p for p in folder.iterdir() if p.suffix in (".json", ".txt", ".model")) if folder and \
                folder.is_dir() else []
            return [self.run_dir / "config.yaml", self.run_dir / "model.safetensors", *extra]
        if self.weights == "imagenet":
            from transferkit.backbones.tv import resolve_imagenet

            return [resolve_imagenet(self.backbone)]
        if self.kind == "random":  # the architecture of a text encoder is in its folder's config.json
            return [Path(self.weights) / "config.json"] if self.weights else []
        return [Path(self.weights)] if self.weights else []

    def reference_of(self) -> "Candidate":
        """``random:BACKBONE`` with this candidate's architecture and view of the target."""
        folder = (self.weights or str(minilm_path())) if self.backbone == "hf_text" else None
        read = ", ".join(f"{k}={v}" for k, v, d in zip(("image_size", "channels", "preprocess"), self.view,
                                                        DEFAULT_VIEW) if v != d)
        return replace(self, spec=f"{RANDOM}{self.backbone}" + (f" [{read}]" if read else ""), kind="random",
                       weights=folder, run_dir=None, source=None, reference=True)


def _backbone_name(name: str, spec: str) -> str:
    if not name.startswith("timm/"):
        try:
            BACKBONES.get(name)
        except TransferkitError as e:
            raise TransferkitError(f"Candidate '{spec}': {e}") from None
    return name


def parse_candidate(spec: str) -> Candidate:
    """What a candidate string names (see the module docstring); nothing is loaded yet."""
    spec = spec.strip()
    path = Path(spec)
    if spec.startswith(RANDOM):
        return Candidate(spec, "random", _backbone_name(spec[len(RANDOM):], spec))
    if path.is_dir():
        if (path / "config.yaml").is_file():
            if not (path / "model.safetensors").is_file():
                raise TransferkitError(f"Candidate '{spec}' is a run directory without model.safetensors; let its "
                                       "training finish, or give another run.")
            return _run_candidate(spec, path)
        if (path / "config.json").is_file():
            return Candidate(spec, "hf", "hf_text", str(path))
        raise TransferkitError(f"Candidate '{spec}' is a folder with neither config.yaml (a run directory) nor "
                               "config.json (a Hugging Face model); give " + SYNTAX + ".")
    name, eq, weights = spec.partition("=")
    if eq:
        backbone = _backbone_name(name.strip(), spec)
        weights = weights.strip()
        if weights != "imagenet" and not Path(weights).exists():
            raise TransferkitError(f"Candidate '{spec}': the weights '{weights}' do not exist; check the path.")
        return Candidate(spec, "weights", backbone, weights)
    if path.is_file():
        raise TransferkitError(f"Candidate '{spec}' is a weights file; name its backbone as BACKBONE={spec} "
                               f"(e.g. small_cnn={spec}).")
    if name.startswith("timm/") or name in BACKBONES.names():
        raise TransferkitError(f"Candidate '{spec}' names a backbone without weights; give them as {spec}=PATH, or "
                               f"write {RANDOM}{spec} for a random initialisation.")
    raise TransferkitError(f"Candidate '{spec}' is neither an existing path nor a backbone; give {SYNTAX}.")


def _run_candidate(spec: str, run_dir: Path) -> Candidate:
    from transferkit.config import load_config

    cfg = load_config(run_dir / "config.yaml")
    d, m = cfg.data, cfg.model
    return Candidate(spec, "run", m.backbone, m.weights if m.backbone == "hf_text" else None, dict(m.backbone_args),
                     run_dir, (d.image_size, d.channels, d.preprocess), d.source or d.dataset)


def parse_candidates(text: str | list[str]) -> list[Candidate]:
    """``"a,b,c"`` (or a list) -> the parsed candidates, each named once."""
    specs = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    if not specs:
        raise TransferkitError("--candidates is empty; give " + SYNTAX + ", comma-separated.")
    twice = sorted({s for s in specs if specs.count(s) > 1})
    if twice:
        raise TransferkitError(f"--candidates names '{twice[0]}' twice; give each candidate once.")
    return [parse_candidate(s) for s in specs]


def fill_args(c: Candidate, example) -> Candidate:
    """Fill the input size of a backbone that takes one (``small_cnn``'s channels, ``mlp``'s width)
    from a target example, unless the candidate's config gave it."""
    if c.kind == "run" or not isinstance(example, torch.Tensor) or c.backbone.startswith("timm/"):
        return c
    params = inspect.signature(BACKBONES.get(c.backbone)).parameters
    args = dict(c.args)
    if "in_channels" in params and example.dim() == 3:
        args.setdefault("in_channels", int(example.shape[0]))
    if "in_features" in params:
        args.setdefault("in_features", int(example.numel()))
    return replace(c, args=args)


@dataclass
class Built:
    """A candidate's backbone and, when it has one, its classifier head (run directories)."""

    backbone: Backbone
    head: nn.Module | None = None


def build(c: Candidate) -> Built:
    """The candidate's backbone (its weights loaded, or seeded random ones) and classifier head."""
    if c.kind == "run":
        from transferkit.finetune.saved import load_model

        cfg, model = load_model(c.run_dir)
        head = model.heads[model.default_task] if cfg.model.task == "classification" else None
        return Built(model.backbone, head)
    torch.manual_seed(RANDOM_SEED)
    if c.kind == "random" and c.backbone == "hf_text":  # the folder gives the architecture; its weights are reset
        backbone = create_backbone("hf_text", weights=c.weights, **c.args)
        for module in backbone.modules():
            if module is not backbone and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        return Built(backbone)
    return Built(create_backbone(c.backbone, weights=None if c.kind == "random" else c.weights, **c.args))


def check_fits(c: Candidate, built: Built, data: Dataset, rows: np.ndarray, target: str) -> None:
    """Run the backbone on two target examples: a backbone that cannot encode them is refused here."""
    kind = getattr(data, "kind", "image")
    takes = built.backbone.input_kind
    if (takes == "text") != (kind == "text") or (takes == "image" and kind == "vector"):  # an mlp flattens images
        raise TransferkitError(f"Candidate '{c.spec}' takes {takes} inputs but the target "
                               f"'{target}' holds {kind} data; choose a candidate for {kind} data.")
    x, _ = next(iter(DataLoader(Subset(data, rows[:2]), batch_size=2)))
    try:
        with torch.no_grad():
            out = built.backbone.eval().features(x)
    except (RuntimeError, ValueError, IndexError) as e:
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        shape = tuple(x.shape[1:]) if isinstance(x, torch.Tensor) else "texts"
        raise TransferkitError(f"Candidate '{c.spec}' cannot encode the target '{target}' (inputs of shape {shape}: "
                               f"{reason}); choose a backbone made for these inputs or resize the data.") from None
    if out.dim() != 2 or len(out) != len(x):
        raise TransferkitError(f"Candidate '{c.spec}' returns features of shape {tuple(out.shape)} for "
                               f"{len(x)} target inputs, not [N, D]; choose a backbone whose features are vectors.")
