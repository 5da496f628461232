"""``transferkit meta CONFIG``: meta-train one method on episodes of the meta-train classes, validate on
episodes of the meta-validation classes, test on episodes of the meta-test classes; one run directory.

Layout: ``config.yaml``, ``metrics.jsonl`` (one record per meta-validation: iteration, mean meta-train
loss since the last record, validation accuracy and its 95 % CI, seconds), ``checkpoints/epoch-NNNN``
(NNNN = iterations done; the whole learner, Adam's state and the iteration count), ``model.safetensors``,
``results.json`` (test accuracy mean ± 1.96 s / sqrt(n), s the sample std, over ``train.test_episodes``),
``report.html``.

The loop is this file's own, not ``engine.Trainer``'s: see ARCHITECTURE.md ("Meta-learning runs").
Episode ``i`` of a sampler is a pure function of ``(seed, i)`` and meta-batch ``t`` holds episodes
``t * meta_batch ..``, so the iteration count is all a resumed run needs to draw what it would have drawn.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from transferkit.backbones import create_backbone
from transferkit.config import MetaConfig, MetaData, dump_config, load_config, parse_config
from transferkit.data.datasets import ArrayDataset, standardized
from transferkit.data.registry import load_dataset
from transferkit import collective
from transferkit.engine import checkpoint as ckpt, distributed
from transferkit.engine.progress import EpochProgress
from transferkit.errors import TransferkitError
from transferkit.heads import create_head
from transferkit.meta import EpisodeSampler, check_disjoint, reptile_epsilon, split_classes
from transferkit.meta.learners import MetaLearner, class_batch
from transferkit.model import TransferModel
from transferkit.report.meta import meta_report

SPLITS = ("train", "val", "test")


def _omniglot(path: Path, image_size: int | None) -> tuple[ArrayDataset, dict[str, list[int]]]:
    """Omniglot's background + evaluation characters as one dataset (evaluation classes numbered after
    the background ones) and the Vinyals split lists of Snell et al. stored in the file."""
    with np.load(path, allow_pickle=False) as d:
        n_bg = len(d["char_id_background"])
        ds = ArrayDataset(np.concatenate([d["x_background"], d["x_evaluation"]]),
                          np.concatenate([d["y_background"], d["y_evaluation"] + n_bg]).astype(np.int64),
                          name="omniglot")
        code = np.concatenate([d["vinyals_split_background"], d["vinyals_split_evaluation"]])
    vinyals = {s: np.flatnonzero(code == k).tolist() for k, s in enumerate(SPLITS)}
    return (ds.resize(image_size) if image_size else ds), vinyals


def _is_omniglot(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as d:
            return "x_background" in d.files
    except Exception:  # not an archive: load_dataset says so in its own words
        return False


def load_meta_data(cfg: MetaData) -> tuple[ArrayDataset, dict[str, list[int]]]:
    """The dataset and its disjoint meta-train / val / test classes (given, Vinyals', or drawn)."""
    path, vinyals = Path(cfg.dataset), None
    if path.suffix == ".npz" and path.is_file() and _is_omniglot(path):
        ds, vinyals = _omniglot(path, cfg.image_size)
    else:
        ds = load_dataset(cfg.dataset, cfg.data_dir, cfg.image_size, channels=cfg.channels)
    if cfg.preprocess == "standardize":
        ds = standardized(ds, f"'{cfg.dataset}'")
    present = set(np.unique(np.asarray(ds.targets)).tolist())
    if cfg.classes is not None:
        splits = {s: list(cfg.classes[s]) for s in SPLITS}
        unknown = sorted(c for s in SPLITS for c in splits[s] if c not in present)
        if unknown:
            raise TransferkitError(f"data.classes names class {unknown[0]}, which '{cfg.dataset}' does not have; "
                                   "list classes of the data only.")
    elif cfg.split == "vinyals":
        if vinyals is None:
            raise TransferkitError(f"data.split 'vinyals' needs Omniglot's omniglot.npz, and '{cfg.dataset}' has no "
                                   "Vinyals lists; give data.split as three fractions or data.classes.")
        splits = vinyals
    else:
        whole = all(float(v).is_integer() for v in cfg.split) and sum(cfg.split) > 1
        splits = split_classes(sorted(present), [int(v) for v in cfg.split] if whole else cfg.split, cfg.split_seed)
    check_disjoint(splits)
    return ds, splits


def head_outputs(cfg: MetaConfig, train: EpisodeSampler) -> int:
    """The head's width: n_way, or every (class, rotation) of the meta-train classes for ``finetune``."""
    return len(train.classes) if cfg.method.name == "finetune" else cfg.data.n_way


def build_learner(cfg: MetaConfig, outputs: int, image_shape: tuple) -> MetaLearner:
    """The model (backbone + a linear head of ``outputs``, see :func:`head_outputs`) inside its
    method, initialised from ``train.seed``."""
    torch.manual_seed(cfg.train.seed)
    m, args = cfg.method, dict(cfg.model.backbone_args)
    if cfg.model.backbone == "conv4":
        args = {"in_channels": image_shape[0], "image_size": image_shape[-1]} | args
    backbone = create_backbone(cfg.model.backbone, **args)
    model = TransferModel(backbone, create_head("linear", backbone.num_features, outputs))
    return MetaLearner(model, m.name, cfg.data.n_way, m.inner_steps, m.eval_inner_steps, m.inner_lr,
                       m.learn_inner_lr, m.metric, m.vectorize, m.zero_head)


def _samplers(cfg: MetaConfig, ds, splits) -> dict[str, EpisodeSampler]:
    d, seed = cfg.data, cfg.train.seed
    if d.train_n_way not in (None, d.n_way) and cfg.method.name not in ("protonet", "finetune"):
        raise TransferkitError(f"data.train_n_way={d.train_n_way} differs from data.n_way={d.n_way}, which only "
                               f"protonet and finetune allow, not {cfg.method.name}; remove data.train_n_way.")
    way = {"train": d.train_n_way or d.n_way, "val": d.n_way, "test": d.n_way}
    queries = {"train": d.train_q_queries or d.q_queries, "val": d.q_queries, "test": d.q_queries}
    return {s: EpisodeSampler(ds, splits[s], way[s], d.k_shot, queries[s], d.rotations, seed=3 * seed + k,
                              name=f"meta-{s if s != 'val' else 'validation'}") for k, s in enumerate(SPLITS)}


def evaluation_settings(cfg: MetaConfig) -> list[tuple[int, int]]:
    """(way, shot) of every test: data's first, then each of train.test_ways x train.test_shots."""
    main = (cfg.data.n_way, cfg.data.k_shot)
    ways = sorted(set(cfg.train.test_ways) | {main[0]})
    shots = sorted(set(cfg.train.test_shots) | {main[1]})
    return [main] + [(w, k) for w in ways for k in shots if (w, k) != main]


def _test_samplers(cfg: MetaConfig, ds, splits, main: EpisodeSampler) -> dict[tuple[int, int], EpisodeSampler]:
    """A meta-test sampler per test setting; they share the main test sampler's seed."""
    return {(w, k): main if (w, k) == (main.n_way, main.k_shot) else
            EpisodeSampler(ds, splits["test"], w, k, cfg.data.q_queries, cfg.data.rotations, seed=main.seed,
                           name=f"meta-test ({w}-way {k}-shot)") for w, k in evaluation_settings(cfg)}


def _on(ep, device):
    return type(ep)(*(getattr(ep, f).to(device) for f in ("support_x", "support_y", "query_x", "query_y")), ep.classes)


def evaluate_episodes(learner: MetaLearner, sampler: EpisodeSampler, n: int, device) -> dict:
    """Mean query accuracy over episodes ``0..n-1`` of ``sampler`` and its 95 % CI."""
    learner.eval()
    accs = np.array([learner.accuracy(_on(sampler.episode(i), device)) for i in range(n)])
    learner.train()
    return {"accuracy": float(accs.mean()), "ci95": ci95(accs), "episodes": n}


def ci95(accs) -> float:
    """The half-width of the 95 % confidence interval of the mean accuracy, ``1.96 s / sqrt(n)`` with
    ``s`` the sample standard deviation (n - 1 in the denominator, as the evaluation of Snell et al.'s
    code); 0.0 for one episode, whose spread is unknown (no interval is drawn)."""
    accs = np.asarray(accs, dtype=float)
    return 0.0 if len(accs) < 2 else float(1.96 * accs.std(ddof=1) / np.sqrt(len(accs)))


def _outer_step(learner: MetaLearner, opt, sampler: EpisodeSampler, cfg: MetaConfig, i: int, device) -> float:
    """Meta-iteration ``i``: one outer update; returns its meta-train loss."""
    torch.manual_seed(cfg.train.seed * 1_000_003 + i)  # dropout, if any, replays on resume
    m = cfg.method
    if m.name == "reptile":
        batch = _on(sampler.batch(i * m.meta_batch, m.meta_batch), device)
        return learner.reptile_step(batch, reptile_epsilon(i, cfg.train.iterations, m.meta_step, m.meta_step_final))
    # Under N processes each takes its share of the meta-batch's episodes (finetune: of the batch's
    # rows), its loss weighted by N x its share, and the gradients are averaged: the one-process step.
    if m.name == "finetune":
        x, y = (collective.share(t) for t in class_batch(sampler, i, m.batch_size))
        batch, scale = (x.to(device), y.to(device)), collective.processes() * len(y) / m.batch_size
    else:
        tasks = collective.share(torch.arange(i * m.meta_batch, (i + 1) * m.meta_batch))
        batch, scale = _on(sampler.batch(int(tasks[0]), len(tasks)), device), collective.processes() * len(tasks) / m.meta_batch
    opt.zero_grad(set_to_none=True)
    loss = learner.outer_loss(batch)
    (loss * scale if scale != 1.0 else loss).backward()
    collective.average_gradients(learner.parameters())
    opt.step()
    return collective.mean_over_processes([loss.detach()], scale)[0].item()


def check_processes(cfg: MetaConfig, processes: int | None = None, learner: torch.nn.Module | None = None) -> None:
    """Refuse, in one sentence, a meta-learning run that ``processes`` (default: this run's) cannot share
    exactly; with the ``learner``, the fine-tuning baseline with BatchNorm too (its class batch is shared)."""
    n, m = processes or distributed.world_size(), cfg.method
    if n == 1:
        return
    if m.name == "finetune" and learner is not None and any(
            isinstance(x, torch.nn.modules.batchnorm._BatchNorm) for x in learner.modules()):
        raise TransferkitError("The finetune baseline shares each class batch among the processes, whose BatchNorm "
                               "layers would normalise their own rows apart; train it in one process.")
    if m.name == "reptile":
        raise TransferkitError("Reptile steps the weights within each task, so its meta-batch cannot be shared by "
                               "several processes; train it in one process (without --processes or torchrun).")
    size, key = (m.batch_size, "method.batch_size") if m.name == "finetune" else (m.meta_batch, "method.meta_batch")
    if size < n:
        raise TransferkitError(f"{key} {size} is smaller than the {n} processes that share it; set it to at least {n}.")


def _resume(out: Path, learner, opt, main: bool = True) -> tuple[int, float]:
    """Load the last checkpoint (iterations done, seconds spent) and drop later metric records (in the
    process that writes)."""
    latest = ckpt.latest_checkpoint(out / "checkpoints")
    if latest is None:
        return 0, 0.0
    state, optim = ckpt.read_checkpoint(latest, learner)
    opt.load_state_dict(optim)
    metrics = out / "metrics.jsonl"
    if main and metrics.is_file():
        keep = [r for r in metrics.read_text().splitlines()
                if r.strip() and json.loads(r)["iteration"] <= state["iteration"]]
        ckpt.atomic_write_text(metrics, "".join(r + "\n" for r in keep))
    return state["iteration"], state["seconds"]


def _flat(d: dict, prefix: str = "") -> dict:
    return {k: v for key, val in d.items() for k, v in
            (_flat(val, f"{prefix}{key}.").items() if isinstance(val, dict) else [(f"{prefix}{key}", val)])}


def _same_config(out: Path, cfg: MetaConfig) -> None:
    """Refuse to resume a run with a config other than the one it was started with."""
    saved = _flat(load_config(out / "config.yaml", schema=MetaConfig).model_dump(mode="json"))
    now = _flat(cfg.model_dump(mode="json"))
    changed = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
    if changed:
        raise TransferkitError(f"Cannot resume '{out}' with a config whose '{changed[0]}' differs from its config.yaml "
                               f"({saved.get(changed[0])!r}); resume with the run's own config or start a new run.")


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise TransferkitError("train.device is 'cuda' but no GPU is visible; set train.device to 'auto' or 'cpu'.")
    return torch.device("cuda" if name in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def run_meta(config: MetaConfig | dict | str | Path, out: str | Path, overwrite: bool = False, resume: bool = False,
             progress: bool | None = None, overrides: list[str] | None = None, on_eval=None) -> dict:
    """Meta-train, validate and test one method; write the run directory; return ``results.json``'s dict.

    ``on_eval(record)`` is called after each meta-validation, once its checkpoint is written.

    Example:
        >>> res = run_meta("examples/meta/omniglot_protonet.yaml", out="runs/protonet")
        >>> res["test"]["accuracy"], res["test"]["ci95"]
    """
    from transferkit.api import check_run_dir, open_run_dir

    cfg = config if isinstance(config, MetaConfig) else (
        parse_config(dict(config), "config", overrides, schema=MetaConfig) if isinstance(config, dict)
        else load_config(config, overrides, schema=MetaConfig))
    out, device, t = Path(out), _device(cfg.train.device), cfg.train
    ds, splits = load_meta_data(cfg.data)
    samplers = _samplers(cfg, ds, splits)  # every episode error is raised before the run directory is touched
    tests = _test_samplers(cfg, ds, splits, samplers["test"])
    image_shape, outputs = tuple(ds[0][0].shape), head_outputs(cfg, samplers["train"])
    learner = build_learner(cfg, outputs, image_shape)
    check_processes(cfg, learner=learner)
    check_run_dir(out, overwrite, resume)  # in every process alike, before any of them writes
    if resume:
        _same_config(out, cfg)
        if (out / "results.json").is_file():  # finished already
            return json.loads((out / "results.json").read_text())
    # under several processes, process 0 writes, validates and tests
    main = open_run_dir(out, overwrite, resume, t.device, None if resume else dump_config(cfg))
    if distributed.world_size() > 1 and device.type == "cuda":
        from accelerate import PartialState

        device = PartialState().device  # this process's GPU
    learner = learner.to(device)
    opt = torch.optim.Adam(learner.parameters(), lr=t.lr)
    start, seconds = _resume(out, learner, opt, main) if resume else (0, 0.0)
    keys, losses = set(learner.state_dict()), []
    with EpochProgress(t.iterations - start, progress, description=f"meta-train {cfg.method.name}") as bar:
        for i in range(start, t.iterations):
            tic = time.perf_counter()
            losses.append(_outer_step(learner, opt, samplers["train"], cfg, i, device))
            seconds += time.perf_counter() - tic
            bar.advance(info=f"loss {losses[-1]:.3f}")
            done = i + 1
            if (done % t.eval_every and done != t.iterations) or not main:
                continue
            val = evaluate_episodes(learner, samplers["val"], t.val_episodes, device)
            record = {"iteration": done, "train/loss": float(np.mean(losses)), "val/accuracy": val["accuracy"],
                      "val/ci95": val["ci95"], "seconds": seconds}
            with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            ckpt.save_checkpoint(out / "checkpoints", done, learner, opt, {"iteration": done, "seconds": seconds},
                                 keep=set(), keys=keys)
            losses = []
            if on_eval is not None:
                on_eval(record)
    distributed.barrier()  # the last checkpoint is written
    if not main:
        return {}
    results_tests = []
    for (way, shot), sampler in tests.items():
        tic = time.perf_counter()
        results_tests.append({"n_way": way, "k_shot": shot} | evaluate_episodes(learner, sampler, t.test_episodes, device)
                             | {"seconds": time.perf_counter() - tic})
    results = {"name": cfg.name or out.name, "method": cfg.method.name, "n_way": cfg.data.n_way,
               "k_shot": cfg.data.k_shot, "iterations": t.iterations, "test": results_tests[0],
               "tests": results_tests, "classes": {s: len(splits[s]) for s in SPLITS}, "train_seconds": seconds,
               "test_seconds": sum(r["seconds"] for r in results_tests), "device": device.type,
               "image_shape": list(image_shape), "head_outputs": outputs}
    ckpt.save_weights(learner, out / "model.safetensors")
    ckpt.atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    meta_report(out, results)
    return results


def load_meta_run(run_dir: str | Path) -> tuple[MetaConfig, MetaLearner, dict]:
    """A finished meta-learning run: its config, its learner with the trained weights (eval mode), and
    ``results.json``'s dict."""
    run_dir = Path(run_dir)
    results_file = run_dir / "results.json"
    if not results_file.is_file():
        raise TransferkitError(f"'{run_dir}' is not a finished meta-learning run (no results.json); finish it with "
                               f"`transferkit meta CONFIG --out {run_dir} --resume`.")
    cfg = load_config(run_dir / "config.yaml", schema=MetaConfig)
    results = json.loads(results_file.read_text())
    learner = build_learner(cfg, results["head_outputs"], tuple(results["image_shape"]))
    ckpt.load_weights(learner, run_dir / "model.safetensors")
    return cfg, learner.eval(), results


def is_meta_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` was written by ``transferkit meta`` (its results name a meta-learning method)."""
    results = Path(run_dir) / "results.json"
    return results.is_file() and "head_outputs" in json.loads(results.read_text())


def _as_run_images(ds: ArrayDataset, cfg: MetaConfig, image_shape: tuple, what: str) -> torch.Tensor:
    """Images of ``ds`` brought to the run's input: resized to its size and standardised as it was."""
    x = ds.resize(image_shape[-1]).x if ds.kind == "image" and len(image_shape) == 3 else ds.x
    x = torch.as_tensor(x, dtype=torch.float32)
    if cfg.data.preprocess == "standardize":
        x = standardized(ArrayDataset(x, np.zeros(len(x), dtype=np.int64)), what).x
    if tuple(x.shape[1:]) != tuple(image_shape):
        raise TransferkitError(f"{what} holds inputs of shape {tuple(x.shape[1:])}, and the run was trained on "
                               f"{tuple(image_shape)}; give {image_shape[0]}-channel images like the training data.")
    return x


def read_support(path: str | Path, cfg: MetaConfig, image_shape: tuple) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A support set: a folder with one subfolder of images per class (named by the subfolder, in
    sorted order), or an .npz with ``x`` and class ``y``. Returns ``(x, labels 0..N-1, class names)``."""
    from transferkit.api import image_files_dataset
    from transferkit.data.datasets import IMAGE_SUFFIXES

    path = Path(path)
    if not path.exists():
        raise TransferkitError(f"Support set '{path}' does not exist; check the path.")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as d:
            if not {"x", "y"} <= set(d.files):
                raise TransferkitError(f"'{path}' needs arrays 'x' and 'y'; save the support set as "
                                       "numpy.savez(path, x=..., y=...).")
            x, y = d["x"], d["y"]
        values, labels = np.unique(y, return_inverse=True)
        ds, names = ArrayDataset(x, labels.astype(np.int64)), [str(v) for v in values]
    else:
        folders = sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
        files = [sorted(f for f in d.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES) for d in folders]
        empty = [d for d, fs in zip(folders, files) if not fs]
        if empty:
            raise TransferkitError(f"Support class folder '{empty[0]}' holds no images; add images or remove it.")
        ds = image_files_dataset([f for fs in files for f in fs], cfg)
        labels = np.repeat(np.arange(len(folders)), [len(fs) for fs in files])
        names = [d.name for d in folders]
    if len(names) < 2:
        raise TransferkitError(f"Support set '{path}' holds {len(names)} class; give at least two (one subfolder of "
                               "images per class).")
    return _as_run_images(ds, cfg, image_shape, f"Support set '{path}'"), torch.as_tensor(labels), names


def predict_meta(run_dir: str | Path, support: str | Path, queries: str | Path) -> list[dict]:
    """Adapt a meta-learning run to a new support set and predict each query: one row per query with
    its id, the class (index into the sorted class folders, and name) and its probability.

    The inner-loop methods (maml, fomaml, anil, reptile) normalise the queries with their own batch
    statistics, as in training, so their predictions are made for the queries together; protonet and
    finetune predict each query on its own."""
    from transferkit.api import read_inputs

    cfg, learner, results = load_meta_run(run_dir)
    sx, sy, names = read_support(support, cfg, tuple(results["image_shape"]))
    ids, ds = read_inputs(queries, cfg)
    qx = _as_run_images(ds, cfg, tuple(results["image_shape"]), f"Queries '{queries}'")
    probs = torch.softmax(learner.logits(sx, sy, qx), dim=1)
    return [{"input": i, "prediction": int(p.argmax()), "class": names[int(p.argmax())],
             "confidence": round(float(p.max()), 4)} for i, p in zip(ids, probs)]
