"""Run configuration: validated with pydantic before any training time is spent."""

from __future__ import annotations

import copy
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from transferkit.errors import TransferkitError, did_you_mean
from transferkit.tasks import TASKS, create_task, metric_mode


def _takes_bool(ann: Any) -> bool:
    """Whether a field annotation accepts true/false (pydantic would silently turn them into 1/0)."""
    if ann is bool or ann is Any:
        return True
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        return any(_takes_bool(a) for a in typing.get_args(ann))
    if origin is Literal:
        return any(isinstance(a, bool) for a in typing.get_args(ann))
    return False


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no unknown keys, no inf/NaN numbers

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        ann = cls.model_fields[info.field_name].annotation
        items = [value]
        if isinstance(value, list) and typing.get_origin(ann) is list:  # e.g. compare.shots: [true]
            ann, items = typing.get_args(ann)[0], value
        if any(isinstance(v, bool) for v in items) and not _takes_bool(ann):
            raise ValueError("true/false is not allowed here (write a number or a name)")
        if ann is bool and not isinstance(value, bool):  # pydantic would turn 0/1 or "yes" into false/true
            raise ValueError("write true or false here")
        return value


class _TaskChoice(_Strict):
    task: str = "classification"  # what the head predicts: classification | multilabel | regression
    task_args: dict[str, Any] = {}  # arguments of the task type, e.g. {loss: l1} for regression

    @field_validator("task")
    @classmethod
    def _known_task(cls, name: str) -> str:
        TASKS.get(name)  # an unknown name fails with a did-you-mean
        return name

    @field_validator("task_args")
    @classmethod
    def _task_args_fit(cls, args: dict, info: ValidationInfo) -> dict:
        if "task" in info.data:  # a valid task name (declared above)
            create_task(info.data["task"], **args)
        return args


class DataConfig(_Strict):
    dataset: str  # "name:domain" from `transferkit list datasets`, or a path (.npz, image folder, .csv/.jsonl)
    test: str | None = None  # a separate test dataset; None: split one off `dataset`
    shots: int | None = Field(None, ge=0)  # labelled training examples per class (None: all; 0 only with `source`); class labels only (else label_fraction)
    label_fraction: float | None = Field(None, gt=0, le=1)  # or a stratified fraction of the labels
    val_fraction: float = Field(0.1, ge=0, lt=1)  # held out for validation / early stopping
    test_fraction: float | Literal["rest"] = 0.2  # "rest": every example not used for training or validation
    guard_fraction: float = Field(0.0, ge=0, lt=1)  # target rows held out for the negative-transfer guard only (never trained or selected on); set by the guard when there is no target validation split
    seed: int = 0  # seed of the split and the k-shot draw
    image_size: int | None = Field(None, ge=1)  # resize images (folders and arrays) to this square size
    channels: Literal[1, 3] = 3  # image folders: 1 = greyscale, 3 = RGB
    data_dir: str | None = None  # folder with named external datasets (else $TRANSFERKIT_DATA)
    source: str | None = None  # labelled source-domain data trained on with the target's labelled rows (domain adaptation)
    unlabelled: str | None = None  # unlabelled target data for domain adaptation (its labels, if any, are never read)
    preprocess: Literal["none", "standardize"] = "none"  # standardize: each image/vector to mean 0, std 1 (every dataset of the run)

    @model_validator(mode="after")
    def _zero_shots_need_a_source(self) -> "DataConfig":
        if self.shots == 0 and self.source is None:
            raise ValueError("shots: 0 trains on no labelled example; set data.source to labelled source-domain "
                             "data, or give shots >= 1")
        return self


class ModelConfig(_TaskChoice):  # with task, task_args (above)
    backbone: str = "small_cnn"  # a name from `transferkit list backbones`, or timm/<model>
    weights: str | None = None  # weights file / HF folder / "imagenet"; None = random init
    backbone_args: dict[str, Any] = {}  # keyword arguments of the backbone
    head: str = "linear"  # a name from `transferkit list heads`
    head_args: dict[str, Any] = {}  # keyword arguments of the head
    source_head: bool = False  # start the head from the one in `weights` (a transferkit model file, same labels)
    num_classes: int | None = Field(None, ge=1)  # head outputs: classes, or target columns for regression (None: from the targets)


class StrategyConfig(_Strict):
    name: str = "full"  # a name from `transferkit list strategies`; "a+b" composes; "auto" chooses one (select/auto.py)
    args: dict[str, Any] = {}  # keyword arguments of the (first) strategy; auto: {budget: normal | low}
    reason: str | None = None  # written by strategy auto: why it chose this strategy (one sentence)


class TrainSettings(_Strict):
    epochs: int = Field(10, ge=1)  # passes over the training data
    batch_size: int = Field(64, ge=1)  # examples per optimizer step (per process)
    lr: float = Field(1e-3, gt=0)  # base learning rate (strategies scale it per group)
    weight_decay: float = Field(0.0, ge=0)  # decoupled weight decay (AdamW) / L2 (SGD)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1)  # SGD only
    max_grad_norm: float | None = Field(None, gt=0)  # clip gradients to this norm
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # autocast through Accelerate
    grad_accum: int = Field(1, ge=1)  # batches per optimizer step (an epoch ends with a shorter window)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: GPU when there is one
    seed: int = 0  # weights, shuffling and dropout
    monitor: str = "val/accuracy"  # metric for early stopping and the best checkpoint (a run's default: its task's)
    mode: Literal["max", "min"] = "max"  # whether a larger monitor value is better (a run's default: min for loss/mae/mse)
    patience: int | None = Field(None, ge=1)  # bad epochs before a phase stops (the next one runs; None: never)
    restore_best: bool = True  # end with the best checkpoint's weights (when there is validation data)
    num_workers: int = Field(0, ge=0)  # DataLoader worker processes
    eval_batch_size: int = Field(256, ge=1)


class Variant(_Strict):
    strategy: str | None = None  # the strategy this entry runs (None: the entry's own name)
    args: dict[str, Any] = {}  # its keyword arguments
    model: dict[str, Any] = {}  # keys of the model section that differ for it (e.g. another backbone)
    train: dict[str, Any] = {}  # keys of the train section that differ for it (e.g. more epochs)


class CompareConfig(_Strict):
    strategies: list[str] = ["full"]  # strategy or variant names; from-scratch is always added
    shots: list[int | Literal["all"]] = [10]  # labelled examples per class; "all": every training example
    seeds: int = Field(3, ge=1)  # repetitions (k-shot draw and initialisation)
    variants: dict[str, Variant] = {}  # named set-ups: {lora_r2: {strategy: lora, args: {r: 2}}}


class ReportConfig(_Strict):
    feature_map: Literal["tsne", "pca", "none"] = "tsne"  # runs with data.unlabelled: the 2-D map of source and target features


class RunConfig(_Strict):
    name: str | None = None  # shown in reports
    data: DataConfig
    model: ModelConfig = ModelConfig()
    strategy: StrategyConfig = StrategyConfig()
    train: TrainSettings = TrainSettings()
    report: ReportConfig = ReportConfig()
    compare: CompareConfig = CompareConfig()  # used by `transferkit compare` only

    @model_validator(mode="after")
    def _monitor_follows_the_task(self):
        """Unless set, train.monitor is the task's metric (val/accuracy, val/mAP, val/mae) and
        train.mode follows the monitor (min for a loss or an error)."""
        given = self.train.model_fields_set
        monitor = self.train.monitor if "monitor" in given else create_task(self.model.task, **self.model.task_args).monitor
        mode = self.train.mode if "mode" in given else metric_mode(monitor)
        if (monitor, mode) != (self.train.monitor, self.train.mode):
            self.train = self.train.model_copy(update={"monitor": monitor, "mode": mode})
        return self


class PrivacySettings(_Strict):
    noise_multiplier: float = Field(..., ge=0)  # the server adds Gaussian noise of std noise_multiplier x clipping_norm / (sampled clients) to the plain mean of the clipped updates
    clipping_norm: float = Field(..., gt=0)  # each client's update (its trained tensors minus the global ones) clipped to this L2 norm
    side: Literal["server", "client"] = "server"  # where the updates are clipped: Flower's server-side or client-side fixed clipping
    delta: float = Field(1e-5, gt=0, lt=1)  # the delta of the client-level (epsilon, delta) the run reports (federated/privacy.py)


class FederatedSettings(_Strict):
    clients: int = Field(5, ge=2)  # simulated clients, each with its own share of data.dataset
    alpha: float = Field(0.5, gt=0)  # Dirichlet concentration of each class over the clients: small = strong label skew
    rounds: int = Field(10, ge=1)  # communication rounds
    local_epochs: int = Field(1, ge=1)  # epochs each sampled client trains per round (train.* gives batch size, lr ...)
    strategy: Literal["fedavg", "fedprox"] = "fedavg"  # Flower's aggregation strategy
    proximal_mu: float = Field(0.0, ge=0)  # fedprox: weight mu of the client's term mu/2 ||w - w_global||^2
    fraction_fit: float = Field(1.0, gt=0, le=1)  # share of the clients sampled for training each round
    local_test_fraction: float = Field(0.2, gt=0, lt=1)  # share of each client's rows kept for its own test
    min_rows: int = Field(10, ge=2)  # redraw the split until every client holds at least this many rows
    dp: PrivacySettings | None = None  # differential privacy (Flower's fixed-clipping wrappers); None: off
    baseline_epochs: int | None = Field(None, ge=1)  # epochs of the centralised / local-only baselines (None: rounds x local_epochs)
    cpus_per_client: float = Field(1.0, gt=0)  # CPU cores the simulation engine reserves per client

    @model_validator(mode="after")
    def _mu_follows_the_strategy(self) -> "FederatedSettings":
        if self.strategy == "fedprox" and self.proximal_mu == 0:
            raise TransferkitError("federated.strategy 'fedprox' needs federated.proximal_mu > 0 (e.g. 0.01); "
                                   "set it, or use strategy 'fedavg'.")
        if self.strategy == "fedavg" and self.proximal_mu > 0:
            raise TransferkitError(f"federated.proximal_mu {self.proximal_mu} applies to strategy 'fedprox' only; "
                                   "set federated.strategy to 'fedprox' or remove proximal_mu.")
        return self


class FederatedConfig(RunConfig):
    """A run config plus the ``federated`` section, for ``transferkit federated``: ``data.dataset`` is the
    pool the clients share (less the global test rows), ``strategy`` says what the clients train."""

    federated: FederatedSettings = FederatedSettings()

    @model_validator(mode="after")
    def _one_labelled_pool(self) -> "FederatedConfig":
        d = self.data
        for key, value in (("shots", d.shots), ("label_fraction", d.label_fraction), ("source", d.source),
                           ("unlabelled", d.unlabelled)):
            if value is not None:
                raise TransferkitError(f"data.{key} is not used by federated runs, whose clients share all the "
                                       f"labelled rows of data.dataset; remove data.{key}.")
        if self.model.task != "classification":
            raise TransferkitError(f"federated runs split the data by class label, and model.task is "
                                   f"'{self.model.task}'; use model.task 'classification'.")
        if d.test is None and d.test_fraction == "rest":
            raise TransferkitError("data.test_fraction 'rest' leaves the clients no rows in a federated run; "
                                   "give a fraction such as 0.3 or a separate data.test.")
        return self


class StreamConfig(_Strict):
    kind: Literal["split_classes", "permuted", "rotated", "sequence"] = "split_classes"  # how tasks differ
    dataset: str = "mnist"  # a dataset name with train/test domains (mnist), or "name:domain" / a path (test split off)
    datasets: list[str] = []  # kind=sequence: one "name:domain" per task, same labels
    scenario: Literal["class", "task", "domain"] | None = None  # default: class for split_classes, else domain
    classes_per_task: int = Field(2, ge=1)  # split_classes: classes in each task
    order: list[int] | None = None  # split_classes: class order (default 0, 1, 2, ...)
    multi_head: bool = False  # task scenario: one head per task instead of masked logits
    tasks: int = Field(5, ge=1)  # permuted / rotated: number of tasks
    max_degrees: float = Field(180.0, gt=0)  # rotated: angles drawn from [0, max_degrees)
    seed: int = 0  # permutations, angles and test splits
    test_fraction: float = Field(0.2, gt=0, lt=1)  # held out when a dataset has no test domain
    image_size: int | None = Field(None, ge=1)  # resize images (to line up the datasets of a sequence)
    data_dir: str | None = None  # folder with named external datasets (else $TRANSFERKIT_DATA)


class ContinualCompare(_Strict):
    strategies: list[str] = []  # strategy or variant names also run on the same stream, for the comparison table
    variants: dict[str, Variant] = {}  # named set-ups: {er_500: {strategy: er, args: {size: 500}}}


class ContinualConfig(_Strict):
    name: str | None = None  # shown in reports
    stream: StreamConfig = StreamConfig()
    model: ModelConfig = ModelConfig()
    strategy: StrategyConfig = StrategyConfig(name="naive")  # a name from `transferkit list continual`; "a+b" composes
    train: TrainSettings = TrainSettings()  # per task
    deterministic: bool = False  # torch deterministic algorithms (bit-identical resumes on GPU too)
    compare: ContinualCompare = ContinualCompare()

    @field_validator("model")
    @classmethod
    def _split_streams_are_classification(cls, model: ModelConfig, info: ValidationInfo) -> ModelConfig:
        stream = info.data.get("stream")  # validated first (declared above)
        if model.task != "classification" and stream is not None and stream.kind == "split_classes":
            raise TransferkitError(f"stream.kind 'split_classes' groups class labels into tasks, so model.task "
                                   f"'{model.task}' cannot use it; choose stream.kind permuted, rotated or "
                                   "sequence (domain streams of any task type), or remove model.task.")
        return model


class MultitaskData(_Strict):
    kind: Literal["multimnist", "domains"] = "domains"  # two digits per image, or one task per dataset domain
    tasks: list[str] = []  # domains: one "name:domain" per task (the task is named after the domain)
    per_task: int | None = Field(None, ge=2)  # domains: at most this many rows per task (stratified)
    test_fraction: float = Field(0.3, gt=0, lt=1)  # domains: held out per task for testing
    val_fraction: float = Field(0.1, ge=0, lt=1)  # of the training rows, for validation curves / early stopping
    train_size: int = Field(20000, ge=1)  # multimnist: training images (drawn from MNIST's training split)
    test_size: int = Field(5000, ge=1)  # multimnist: test images (from MNIST's test split)
    encoder: str | None = None  # domains: a backbone that encodes the inputs once, frozen (hf_text for texts)
    encoder_weights: str | None = None  # its weights (default: the backbone's own, e.g. the packaged MiniLM)
    encoder_args: dict[str, Any] = {}  # its keyword arguments
    cache_dir: str | None = None  # where encoded features are kept (default $TRANSFERKIT_CACHE or ~/.cache/transferkit)
    batches: Literal["mixed", "alternating"] = "mixed"  # tasks from different datasets: every task per batch, or in turn
    seed: int = 0  # image draws and splits
    data_dir: str | None = None  # folder with named external datasets (else $TRANSFERKIT_DATA)


class TaskSpec(_TaskChoice):
    """One task's type in a multi-task model (task, task_args as above)."""


class MultitaskModel(_TaskChoice):  # task, task_args: every task's type unless `tasks` names it
    tasks: dict[str, TaskSpec] = {}  # per task (head): {value: {task: regression, task_args: {loss: l1}}}
    arch: Literal["hard", "mmoe", "cross_stitch"] = "hard"  # hard sharing, mixture of experts, cross-stitch units
    arch_args: dict[str, Any] = {}  # mmoe: experts, expert_width; cross_stitch: keep
    backbone: str = "mlp"  # the shared network (a name from `transferkit list backbones`)
    weights: str | None = None  # its weights file (None: random init)
    backbone_args: dict[str, Any] = {}  # keyword arguments of the backbone


class MultitaskConfig(_Strict):
    name: str | None = None  # shown in reports
    data: MultitaskData = MultitaskData()
    model: MultitaskModel = MultitaskModel()
    weighter: StrategyConfig = StrategyConfig(name="equal")  # a name from `transferkit list weighters`
    compare: list[str] = []  # more weighters trained on the same data, for the comparison table
    weighter_args: dict[str, dict[str, Any]] = {}  # arguments of compared weighters: {cagrad: {c: 0.4}}
    single_task: bool = True  # also train one model per task alone (the baselines of delta-m)
    seeds: int = Field(1, ge=1)  # repetitions of every model (initialisation and shuffling)
    similarity_every: int = Field(10, ge=0)  # log the task-gradient cosines every N steps (0: never)
    train: TrainSettings = TrainSettings()


class MetaData(_Strict):
    dataset: str  # an .npz with x, y (or Omniglot's omniglot.npz), or a named dataset "name:domain"
    split: Literal["vinyals"] | list[float] = [0.6, 0.2, 0.2]  # class split: "vinyals" (Omniglot's lists), or train/val/test fractions (or integer counts) drawn with split_seed
    classes: dict[Literal["train", "val", "test"], list[int]] | None = None  # given class lists (overrides split)
    split_seed: int = Field(0, ge=0)  # the draw of the class split
    n_way: int = Field(5, ge=2)  # classes per episode (validation and test)
    train_n_way: int | None = Field(None, ge=2)  # classes per meta-training episode (None: n_way; ProtoNets train at 60)
    k_shot: int = Field(1, ge=1)  # support examples per class
    q_queries: int = Field(15, ge=1)  # query examples per class
    train_q_queries: int | None = Field(None, ge=1)  # query examples per class in meta-training episodes (None: q_queries)
    rotations: bool = False  # each class x 4 rotations of 90 degrees (the Omniglot protocol)
    image_size: int | None = Field(None, ge=1)  # resize images to this square size
    channels: Literal[1, 3] = 1  # image folders: 1 = greyscale, 3 = RGB
    preprocess: Literal["none", "standardize"] = "none"  # standardize: each image to mean 0, std 1
    data_dir: str | None = None  # folder with named external datasets (else $TRANSFERKIT_DATA)

    @field_validator("split")
    @classmethod
    def _three_sizes(cls, split):
        if isinstance(split, list) and len(split) != 3:
            raise ValueError("give three sizes (train, val, test fractions adding up to 1, or integer counts)")
        return split

    @field_validator("classes")
    @classmethod
    def _all_three(cls, classes):
        if classes is not None and set(classes) != {"train", "val", "test"}:
            raise ValueError("give the three lists train, val and test")
        return classes


class MetaModel(_Strict):
    backbone: str = "conv4"  # a name from `transferkit list backbones`
    backbone_args: dict[str, Any] = {}  # keyword arguments of the backbone


class MetaMethod(_Strict):
    name: Literal["maml", "fomaml", "anil", "reptile", "protonet", "finetune"] = "protonet"
    inner_steps: int = Field(1, ge=1)  # maml / fomaml / anil / reptile: gradient steps on the support set (reptile: >= 2, default 5); finetune: steps on the new head (default 100)
    eval_inner_steps: int | None = Field(None, ge=1)  # steps when adapting to validation / test episodes (None: inner_steps)
    inner_lr: float = Field(0.4, gt=0)  # inner-loop step size (finetune: the new head's, default 0.1)
    learn_inner_lr: bool = False  # Meta-SGD: learn one step size per weight (maml, fomaml, anil)
    zero_head: bool = False  # maml / fomaml / anil / reptile: every task's head starts at zero (the zeroing trick of Kao et al., 2022)
    meta_batch: int = Field(1, ge=1)  # episodes per outer update
    vectorize: bool = True  # maml / fomaml / anil / reptile: run a meta-batch's tasks at once with torch.func.vmap (false: a Python loop, the same values; faster for conv nets on a CPU, see BENCHMARKS.md)
    metric: Literal["euclidean", "cosine"] = "euclidean"  # protonet: distance to the prototypes
    batch_size: int = Field(64, ge=1)  # finetune: images per pre-training step on the meta-train classes
    meta_step: float = Field(1.0, gt=0)  # reptile: outer step size epsilon at the first iteration (Nichol et al.: 1)
    meta_step_final: float = Field(0.0, ge=0)  # reptile: epsilon reached linearly at the end of train.iterations

    @model_validator(mode="after")
    def _learned_rates_need_an_inner_loop(self) -> "MetaMethod":
        if self.learn_inner_lr and self.name not in ("maml", "fomaml", "anil"):
            raise ValueError(f"learn_inner_lr applies to maml, fomaml and anil, not {self.name!r}; set it to false")
        if self.name == "finetune":  # the new head needs more than MAML's one step (Chen et al. fit it for 100)
            self.inner_steps = self.inner_steps if "inner_steps" in self.model_fields_set else 100
            self.inner_lr = self.inner_lr if "inner_lr" in self.model_fields_set else 0.1
        if self.name == "reptile":  # one inner step makes Reptile joint SGD (Nichol et al., Sec. 5)
            self.inner_steps = self.inner_steps if "inner_steps" in self.model_fields_set else 5
            if self.inner_steps < 2:
                raise TransferkitError(f"method.inner_steps={self.inner_steps} makes reptile plain joint SGD, "
                                       "with no meta-learning; set method.inner_steps to 2 or more (e.g. 5).")
        return self


class MetaTrain(_Strict):
    iterations: int = Field(1000, ge=1)  # outer updates (meta-batches; finetune: pre-training batches)
    lr: float = Field(1e-3, gt=0)  # outer learning rate (Adam; reptile uses method.meta_step instead)
    seed: int = Field(0, ge=0)  # weights and episodes
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: GPU when there is one
    eval_every: int = Field(100, ge=1)  # iterations between meta-validations (and checkpoints)
    val_episodes: int = Field(100, ge=1)  # meta-validation episodes each time
    test_episodes: int = Field(600, ge=1)  # meta-test episodes at the end (mean and 95 % CI)
    test_ways: list[Annotated[int, Field(ge=2)]] = []  # also test at these ways (protonet / finetune; [] : data.n_way only)
    test_shots: list[Annotated[int, Field(ge=1)]] = []  # also test at these shots ([] : data.k_shot only); every way x shot is tested


class MetaConfig(_Strict):
    name: str | None = None  # shown in reports
    data: MetaData
    model: MetaModel = MetaModel()
    method: MetaMethod = MetaMethod()
    train: MetaTrain = MetaTrain()

    @model_validator(mode="after")
    def _heads_fix_the_way(self) -> "MetaConfig":
        other = sorted(set(self.train.test_ways) - {self.data.n_way})
        if other and self.method.name not in ("protonet", "finetune"):
            raise TransferkitError(f"train.test_ways names {other[0]}-way, but {self.method.name} learns a head of "
                                   f"data.n_way={self.data.n_way} outputs; test other ways with protonet or finetune, "
                                   f"or remove {other[0]} from train.test_ways.")
        return self


def _fields(model: type[BaseModel], loc: tuple) -> list[str]:
    for key in loc:
        ann = model.model_fields.get(str(key))
        if ann is None or not (isinstance(ann.annotation, type) and issubclass(ann.annotation, BaseModel)):
            return []
        model = ann.annotation
    return list(model.model_fields)


def _explain(err: ValidationError, source: str, schema: type[BaseModel] = RunConfig) -> TransferkitError:
    e = err.errors()[0]
    loc = tuple(e["loc"])
    key = ".".join(map(str, loc))
    if e["type"] == "extra_forbidden":
        known = _fields(schema, loc[:-1])
        where = f" in '{'.'.join(map(str, loc[:-1]))}'" if len(loc) > 1 else ""
        listing = f" Known keys{where}: {', '.join(known)}." if known else ""
        return TransferkitError(
            f"{source}: unknown config key '{key}'.{did_you_mean(str(loc[-1]), known)}{listing}"
        )
    if e["type"] == "missing":
        return TransferkitError(f"{source}: config key '{key}' is required; add it.")
    if e["type"] == "value_error" and isinstance(e.get("ctx", {}).get("error"), TransferkitError):
        if not loc:  # a check across sections, whose sentence names its keys
            return TransferkitError(f"{source}: {e['ctx']['error']}")
        return TransferkitError(f"{source}: config key '{key}': {e['ctx']['error']}")
    msg = str(e["msg"]).removeprefix("Value error, ")
    return TransferkitError(f"{source}: config key '{key}': {msg}; got {e.get('input')!r}.")


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, mark) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key, self.problem_mark = key, mark


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser where PyYAML has it (~10x faster)
    """YAML's safe loader, except that a mapping naming a key twice is an error (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise _DuplicateKey(key, key_node.start_mark)
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class reports it
                    pass
        return super().construct_mapping(node, deep)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def _parse_value(text: str) -> Any:
    try:
        return _yaml_load(text)
    except (yaml.YAMLError, RecursionError):
        return text


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a copy of ``raw``."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise TransferkitError(f"--set '{item}' is not of the form key=value (e.g. train.epochs=5).")
        node = raw
        for p in parts[:-1]:
            if node.get(p) is None:  # a section left empty in the YAML file
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):
                raise TransferkitError(f"--set '{item}': '{p}' is not a section; check the key.")
        node[parts[-1]] = _parse_value(value)
    return raw


def parse_config(raw: Any, source: str = "config", overrides: list[str] | None = None, schema=RunConfig):
    """Validate a config mapping against ``schema`` (``RunConfig``, or ``ContinualConfig``)."""
    if not isinstance(raw, dict):
        sections = ", ".join(n for n, f in schema.model_fields.items() if isinstance(f.annotation, type)
                             and issubclass(f.annotation, BaseModel))
        raise TransferkitError(f"{source}: the config must be a mapping of sections ({sections}).")
    raw = apply_overrides(raw, overrides or [])
    try:
        return schema.model_validate(raw)
    except ValidationError as err:
        raise _explain(err, source, schema) from None


def load_config(path: str | Path, overrides: list[str] | None = None, schema=RunConfig):
    """Read a YAML config file, apply ``--set`` overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise TransferkitError(f"Config file '{path}' does not exist; check the path.")
    try:
        raw = _yaml_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise TransferkitError(f"Config file '{path}' is not UTF-8 text; re-save it as UTF-8.") from None
    except _DuplicateKey as e:
        raise TransferkitError(f"Config file '{path}' gives key {e.key!r} twice (line {e.problem_mark.line + 1}); "
                               "keep one of them.") from None
    except (RecursionError, yaml.YAMLError) as e:
        # too deep: the Python parser recurses past Python's limit, libyaml stops at its own nesting limit
        if isinstance(e, RecursionError) or "maximum nesting depth" in str(e):
            raise TransferkitError(f"Config file '{path}' is nested too deeply to read; flatten it.") from None
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise TransferkitError(f"Config file '{path}' is not valid YAML{where}; fix the syntax there.") from None
    return parse_config(raw if raw is not None else {}, source=str(path), overrides=overrides, schema=schema)


def dump_config(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
