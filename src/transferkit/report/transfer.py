"""What transferred: per backbone stage, how far the weights moved from the source and how similar
the fine-tuned stage outputs are to the source's (linear CKA on a probe batch)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from transferkit.metrics import linear_cka, relative_change


def _stage_outputs(backbone: nn.Module, x) -> list[torch.Tensor]:
    outs: list[torch.Tensor] = []
    hooks = [st.register_forward_hook(lambda m, i, o: outs.append((o[0] if isinstance(o, tuple) else o).detach()))
             for st in backbone.stages()]
    try:
        with torch.no_grad():
            backbone.features(x)
    finally:
        for h in hooks:
            h.remove()
    return [o.flatten(1).float() if o.dim() > 2 else o.float() for o in outs]


@torch.no_grad()
def what_transferred(source: nn.Module, tuned: nn.Module, probe) -> list[dict]:
    """One row per stage: name, parameters, relative weight change and CKA(source, tuned).

    ``source`` and ``tuned`` are backbones of the same architecture (``tuned`` may carry LoRA or
    adapters: its effective weights are compared through its outputs, its base weights directly).
    """
    source.eval(), tuned.eval()
    src_stages, new_stages = source.stages(), tuned.stages()
    names = {id(m): n for n, m in tuned.named_modules()}
    src_out, new_out = _stage_outputs(source, probe), _stage_outputs(tuned, probe)
    rows = []
    for i, (a, b) in enumerate(zip(src_stages, new_stages)):
        old = dict(a.named_parameters())
        new = {k.replace(".base_layer", ""): v for k, v in b.named_parameters() if "lora_" not in k}
        shared = [k for k in old if k in new]
        num = sum(float((new[k].double() - old[k].double()).pow(2).sum()) for k in shared) ** 0.5
        den = sum(float(old[k].double().pow(2).sum()) for k in shared) ** 0.5
        rows.append({"stage": names.get(id(b), str(i)) or str(i), "parameters": sum(v.numel() for v in old.values()),
                     "weight_change": num / den if den > 0 else 0.0,
                     "cka": linear_cka(src_out[i], new_out[i]) if i < len(src_out) and i < len(new_out) else float("nan")})
    return rows


def plot_what_transferred(per_strategy: dict[str, list[dict]], path: Path) -> Path:
    """Two panels (relative weight change, CKA to the source), one line per strategy, x = stage."""
    from transferkit.report import _style, plt, save_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, rows in per_strategy.items():
        x = range(len(rows))
        axes[0].plot(x, [r["weight_change"] for r in rows], marker="o", label=name)
        axes[1].plot(x, [r["cka"] for r in rows], marker="o", label=name)
    first = next(iter(per_strategy.values()), [])
    for ax, title in zip(axes, ("relative weight change from the source", "linear CKA to the source features")):
        ax.set_xticks(range(len(first)), [r["stage"] for r in first], rotation=30, ha="right", fontsize=7)
        _style(ax, title=title)
    axes[1].set_ylim(0, 1.05)
    return save_figure(fig, path)


__all__ = ["what_transferred", "plot_what_transferred", "relative_change"]
