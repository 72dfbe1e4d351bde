"""Typed run configuration (spec §5 hyper-parameters, §8 flags): dataclasses with the release's defaults, YAML files
with `_BASE_`, release flags, dotted overrides, validation with the source of every bad key, and a YAML dump."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from mmnas.engine.memory import HOST_MEMORY_POLICIES
from mmnas.models.model_config import ModelConfig
from mmnas.registry import nearest

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A bad config key or value; the message says where it came from and what would be valid."""


@dataclass
class DataConfig:
    dataset: str = "vqa"                    # --DATASET: which data tree/config (vqa: VQA-v2; easyvqa: the demo)
    root: str = "datasets/vqa"              # DATA_ROOT: the release's data/vqa tree
    train_split: str = "train"              # --SPLIT: train | train+val | train+val+vg
    val_split: str = "val"                  # evaluated after every epoch when not trained on
    test_split: str = "test"                # --RUN test: test (test2015) or test-dev
    max_tokens: int = 14                    # MAX_TOKEN
    max_regions: int = 100                  # FRCNFEAT_LEN
    answer_min_count: int = 8               # answers occurring more than this many times form the vocabulary
    word_vectors: str = "auto"              # 'auto' (en_vectors_web_lg, then en_core_web_lg), a spaCy package or
                                            # directory, a GloVe text file, or 'none' (random, with a warning)
    preload_features: bool = False          # read every feature file once into memory (small datasets, the demo)
    num_workers: int = 4                    # --NW
    check: bool = True                      # quick data check at start (full: python3 -m mmnas.check_data)


@dataclass
class OptimConfig:
    batch_size: int = 64                    # --BS: per process (the release's semantics)
    global_batch: bool = False              # true: --BS is the whole batch, split over the processes, and each
                                            # process's loss is scaled so k processes equal one on that batch
    eval_batch_size: int = 0                # 0 = same as batch_size (EVAL_BATCH_SIZE)
    max_epoch: int = 13                     # MAX_EPOCH
    lr_base: float = 1.2e-4                 # NET_LR_BASE (VQA train)
    betas: list = field(default_factory=lambda: [0.9, 0.98])  # OPT_BETAS
    eps: float = 1e-9                       # OPT_EPS
    weight_decay: float = 0.0               # NET_WEIGHT_DECAY
    grad_clip: float = 1.0                  # NET_GRAD_CLIP (≤ 0: off)
    fused_adam: bool = False                # Adam as one fused kernel (CPU and CUDA): ~3.6x faster optimizer step
                                            # on the CPU, numbers differ from the release's Adam by ~1e-7 per step
    warmup: bool = True                     # NET_OPTIM_WARMUP: ¼, ½, ¾ of lr_base in epochs 1–3 (counted in steps)
    lr_decay_rate: float = 0.2              # NET_LR_DECAY_R
    lr_decay_epochs: list = field(default_factory=lambda: [10, 12])  # NET_LR_DECAY_LIST (0-based epoch starts)


@dataclass
class SearchConfig:
    nodes_enc: int = 12                     # NODES['enc']
    nodes_dec: int = 18                     # NODES['dec']
    split_portion: float = 0.8              # SPLIT_PORTION: first part trains weights, the rest α
    alpha_start: int = 20                   # ALPHA_START (epoch, 0-based)
    alpha_every: int = 5                    # ALPHA_EVERY (weight steps)
    mode: str = "full"                      # ALPHA_BINARY_MODE: full | two | darts
    alpha_lr: float = 0.1                   # ALPHA_LR_BASE
    alpha_betas: list = field(default_factory=lambda: [0.0, 0.999])  # ALPHA_OPT_BETAS
    alpha_weight_decay: float = 0.0         # ALPHA_WEIGHT_DECAY
    inactive_grads: str = "zero"            # 'zero': candidates that did not run get zero gradients (release
                                            # side effect: Adam momentum moves them); 'none': left untouched
    init_genotype: str = "mcan_like"        # α start: 'mcan_like' (release) or an arch json path (its epoch0)
    stop_after_unchanged: int = 0           # stop when the genotype has not changed for K epochs (0: never)


@dataclass
class RunConfig:
    run: str = "train"                      # --RUN: train | val | test
    version: str = ""                       # --VERSION (default: <task>_<stage>_<seed>)
    seed: int = -1                          # --SEED (-1: random for training, 888 for search)
    gpu: str = ""                           # --GPU '0, 1': one process per GPU ('' = GPU 0 if any; 'cpu')
    nproc: int = 1                          # --NPROC: CPU processes (gloo); GPU runs take one per --GPU id
    amp: str = "off"                        # --AMP: off | bf16 | fp16 (autocast; fp16 on CUDA only)
    arch_path: str = "arch/mmnas_vqa.json"  # --ARCH_PATH
    arch_epoch: int = 0                     # --ARCH_EPOCH / --GENO_EPOCH
    ckpt_path: str = ""                     # --CKPT_PATH
    resume: bool = False                    # --RESUME
    log_dir: str = "logs"                   # logs/ckpts, logs/log, logs/ckpts/result_test
    arch_dir: str = "arch"                  # searches write arch/<VERSION>.json
    eval_every_epoch: bool = True           # evaluate on val after each epoch (when val is not trained on)
    progress: bool = True                   # tqdm bars (rank 0 only)
    overwrite: bool = False                 # let a fresh run replace the outputs of an earlier run of its VERSION
    ckpt_every: int = 0                     # also checkpoint every N steps inside epochs (0: at epoch ends only)
    plots: bool = True                      # redraw logs/plots/<VERSION>/*.png after every epoch (rank 0)
    tensorboard: bool = False               # also write TensorBoard scalars to logs/tb/<VERSION> (if installed)
    host_memory: str = "system"             # glibc policy (mmnas/engine/memory.py): system = the C library's;
                                            # reuse = freed tensors stay in the heap for the next step (no page
                                            # faults; ~3% faster, +4% RSS); lean = RSS follows live memory
                                            # (~0.5 GB lower at the VQA train step, ~1.3x the step time)


@dataclass
class ItmConfig:
    """Image-text matching (spec §5 ITM hard negatives); read only by the ITM task."""
    neg_start_epoch: int = 0                # NEG_START_EPOCH: first epoch (0-based) that mines hard negatives
                                            # (train 0, search 10); random negatives before it
    neg_every: int = 1                      # NEG_NEPOCH: mine every this many epochs from neg_start_epoch
    neg_randsize: int = 64                  # NEG_RANDSIZE: random candidates scored per anchor (train 64, search 32)
    neg_hardsize: int = 5                   # NEG_HARDSIZE: best-scored candidates kept per anchor
    neg_batch: int = 50                     # NEG_BATCHSIZE: anchors per mining forward (train 50, search 128)
    eval_pairs: int = 1024                  # image-caption pairs per scoring forward in evaluation (release: one
                                            # image × EVAL_BATCH_SIZE = 2 × batch captions); speed/memory only
    search_eval_images: int = 1000          # the search scores its derived net on at most this many α-part images
    pack_dir: str = ""                      # packed, memory-mapped region features ('' = <data.root>/packed)


@dataclass
class Config:
    task: str = "vqa"
    stage: str = "train"                    # train | search
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    run: RunConfig = field(default_factory=RunConfig)
    itm: ItmConfig = field(default_factory=ItmConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def validate(self) -> "Config":
        self.model.validate()
        checks = [
            (self.stage in ("train", "search"), "stage", "'train' or 'search'"),
            (self.run.run in ("train", "val", "test"), "run.run (--RUN)", "train, val or test"),
            (self.optim.batch_size > 0, "optim.batch_size (--BS)", "a positive integer"),
            (self.optim.max_epoch > 0, "optim.max_epoch", "a positive integer"),
            (self.optim.lr_base > 0, "optim.lr_base", "a positive number"),
            (len(self.optim.betas) == 2, "optim.betas", "two numbers"),
            (0 < self.search.split_portion < 1, "search.split_portion", "a number in (0, 1)"),
            (self.search.mode in ("full", "two", "darts"), "search.mode", "full, two or darts"),
            (self.search.inactive_grads in ("zero", "none"), "search.inactive_grads", "'zero' or 'none'"),
            (self.search.alpha_every > 0, "search.alpha_every", "a positive integer"),
            (self.data.max_tokens > 0 and self.data.max_regions > 0, "data.max_tokens/max_regions",
             "positive integers"),
            (self.data.num_workers >= 0, "data.num_workers (--NW)", "0 or more"),
            (self.run.nproc >= 1, "run.nproc (--NPROC)", "a positive integer"),
            (self.run.ckpt_every >= 0, "run.ckpt_every", "0 (epoch ends only) or a number of steps"),
            (self.run.amp in ("off", "bf16", "fp16"), "run.amp (--AMP)", "off, bf16 or fp16"),
            (self.run.host_memory in HOST_MEMORY_POLICIES, "run.host_memory", ", ".join(HOST_MEMORY_POLICIES)),
        ]
        for ok, key, valid in checks:
            if not ok:
                raise ConfigError(f"config value of {key} is invalid; it must be {valid}.")
        return self


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, typ: Any, key: str, source: str) -> Any:
    """Check (and gently convert) a value for a field type; ints are accepted for floats, '1e-4' strings too."""
    origin = typing.get_origin(typ)
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif typ is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    elif typ is list or origin is list:
        if isinstance(value, (list, tuple)):
            return list(value)
    else:
        return value
    name = getattr(typ, "__name__", str(typ))
    raise ConfigError(f"{source}: {key} must be of type {name}, got {value!r} ({type(value).__name__}).")


def merge(cfg: Any, updates: Mapping[str, Any], source: str, prefix: str = "") -> None:
    """Apply a nested mapping onto the dataclass `cfg`, in place; unknown keys suggest the nearest valid one."""
    types = _field_types(type(cfg))
    for key, value in updates.items():
        dotted = f"{prefix}{key}"
        if key not in types:
            hint = nearest(key, list(types))
            did = f" Did you mean '{prefix}{hint[0]}'?" if hint else ""
            raise ConfigError(f"{source}: unknown config key {dotted!r}.{did} "
                              f"Valid keys here: {', '.join(prefix + k for k in types)}.")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: {dotted} is a section; give it a mapping of keys, got {value!r}.")
            merge(current, value, source, prefix=f"{dotted}.")
        else:
            setattr(cfg, key, _coerce(value, types[key], dotted, source))


def load_yaml(path: str | Path, _seen: tuple = ()) -> dict:
    """A YAML config with its `_BASE_` chain resolved (the base's values first, this file's on top)."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"config file {path}: _BASE_ loops back onto itself.")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of config keys.")
    base = data.pop("_BASE_", None)
    if base is None:
        return data
    merged = load_yaml(path.parent / base, _seen + (path,))
    return _deep_update(merged, data)


def _deep_update(base: dict, top: Mapping) -> dict:
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v
    return base


def parse_override(item: str) -> tuple[str, Any]:
    """'optim.lr_base=1e-4' → ('optim.lr_base', 1e-4); the value is read as YAML."""
    if "=" not in item:
        raise ConfigError(f"command line: override {item!r} must look like section.key=value "
                          f"(e.g. optim.lr_base=1e-4).")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def nest(key: str, value: Any) -> dict:
    out: dict = {}
    cur = out
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def stage_config_path(task: str, stage: str, demo: bool = False) -> Path:
    """configs/<task>/<stage>.yaml for real data; configs/demo/<task>_<stage>.yaml for the built-in demo."""
    return CONFIG_DIR / "demo" / f"{task}_{stage}.yaml" if demo else CONFIG_DIR / task / f"{stage}.yaml"


def build_config(task: str, stage: str, dataset: str | None = None, config_file: str | None = None,
                 flags: Mapping[str, Any] | None = None, overrides: list[str] | None = None,
                 demo: bool = False) -> Config:
    """Defaults ← configs/<task>/<stage>.yaml (or the demo's) ← --CONFIG ← release flags ← dotted overrides."""
    cfg = Config(task=task, stage=stage)
    dataset = dataset or task
    path = stage_config_path(task, stage, demo)
    if path.is_file():
        merge(cfg, load_yaml(path), source=f"config file {path}")
    if config_file:
        merge(cfg, load_yaml(config_file), source=f"config file {config_file}")
    merge(cfg, {"data": {"dataset": dataset}}, source="--DATASET")
    for key, value in (flags or {}).items():
        merge(cfg, nest(key, value), source="command line flag")
    for item in overrides or []:
        key, value = parse_override(item)
        merge(cfg, nest(key, value), source=f"command line override {item!r}")
    return cfg.validate()
