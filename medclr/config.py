"""Training recipes as data: ``configs/train/*.yaml`` -> :class:`TrainConfig` (a tree of documented dataclasses).

A recipe has five sections; every field documents itself (``knob(default, help)``) and is listed in the error
message when a key is misspelt::

    data:  {manifest: runs/world/paired.parquet, batch_size: 32, image_size: 128, ecg_fs: 100, ecg_samples: 1000}
    model: ../models/tiny.yaml          # a path (relative to this file, then to the working directory), inline,
                                        # or {file: ../models/demo.yaml, logit_scale: {init: 128}} (merged)
    loss:  {name: convirt, kwargs: {lam: 0.75}}
    optim: {lr: 3.0e-4, warmup_steps: 50, schedule: cosine}
    run:   {out_dir: runs/tiny, max_steps: 200, ckpt_every: 50, seed: 0}

``load_config(path, ["optim.lr=1e-3", "loss.name=symile"])`` applies ``--set`` overrides after the model file is
inlined, so ``--set model.logit_scale.init=128`` works for a model given by path. Values are parsed as YAML
(``1e-3`` is a float, ``true`` a bool, ``[a, b]`` a list); a wrong type or an unknown key is a
:class:`MedclrConfigError` naming the key. The resolved config (model inlined, overrides applied) is what a run
directory stores as ``config.yaml``, and it loads back to an equal :class:`TrainConfig`.

``data.batch_size`` is the **global** batch: under ``torchrun`` with R processes each rank takes
``batch_size / R`` rows of the same global batch, so a recipe means the same optimisation on any number of GPUs.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any, Literal

import yaml

from medclr.models.config import MedclrConfigError, doc, from_dict, knob, to_dict
from medclr.models.factory import ModelConfig, model_config_from_dict

__all__ = ["AugmentConfig", "DataConfig", "LossConfig", "MedclrConfigError", "OptimConfig", "RunConfig",
           "TrainConfig", "check_loss", "config_diff", "load_config", "save_config", "train_config_from_dict"]


@dataclasses.dataclass
class AugmentConfig:
    """Training-only augmentations (validation and evaluation see the cached inputs unchanged)."""

    enabled: bool = knob(True, "apply the augmentations below to training samples")
    cxr_prob: float = knob(0.5, "probability of the X-ray spatial transform (rotation + zoom + shift)")
    cxr_rotate_deg: float = knob(5.0, "X-ray rotation range, +- degrees")
    cxr_zoom: float = knob(0.15, "X-ray zoom range, +- fraction (zoom in = a random resized crop)")
    cxr_shift: float = knob(0.05, "X-ray shift range, +- fraction of the image size")
    cxr_intensity: float = knob(0.1, "X-ray intensity scale range, +- fraction")
    cxr_gamma: tuple[float, float] = dataclasses.field(default=(0.8, 1.25), metadata=doc("X-ray gamma range"))
    ecg_noise_mv: float = knob(0.02, "standard deviation of Gaussian noise added to the ECG, in mV")
    ecg_shift_s: float = knob(0.5, "largest circular time shift of the ECG, in seconds")
    ecg_lead_dropout: float = knob(0.1, "probability of zeroing each ECG lead (at least one lead is kept)")
    report_sentence_keep: float = knob(0.8, "probability of keeping each report sentence (at least one is kept)")


@dataclasses.dataclass
class DataConfig:
    """Where the studies come from and how they are preprocessed (cached once) and batched."""

    manifest: str = knob("", "manifest parquet written by `medclr prepare` (required)")
    batch_size: int = knob(32, "global batch size (split evenly across torchrun ranks)")
    num_workers: int = knob(0, "DataLoader worker processes per rank (0 = load in the training process)")
    cache_dir: str | None = knob(None, "where the preprocessed cache lives; default: <manifest dir>/.medclr_cache")
    cache_workers: int = knob(0, "processes that build the cache (0 = CPU count)")
    image_size: int = knob(128, "X-rays are resized (aspect kept) and padded to image_size x image_size")
    cxr_dtype: Literal["uint8", "uint16"] = knob("uint8", "storage type of cached X-rays")
    ecg_fs: float = knob(100.0, "ECGs are resampled to this rate (Hz)")
    ecg_samples: int = knob(1000, "ECGs are cropped or zero-padded to this many samples")
    ecg_crop: Literal["start", "center"] = knob("start", "which part of a longer ECG is kept")
    modalities: list[str] | None = dataclasses.field(
        default=None, metadata=doc("modalities to train on; default: the model's towers"))
    train_split: str = knob("train", "manifest split used for training")
    val_split: str = knob("val", "manifest split used for validation")
    val_max_rows: int = knob(2000, "validate on at most this many rows (the first ones of the split)")
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig, metadata=doc("augmentations"))


@dataclasses.dataclass
class LossConfig:
    """The contrastive objective: a name registered in ``medclr.losses.LOSSES`` and its keyword arguments."""

    name: str = knob("convirt", "convirt | symile | gram (any name registered in medclr.losses.LOSSES)")
    kwargs: dict[str, Any] = dataclasses.field(
        default_factory=dict, metadata=doc("keyword arguments of the loss class, e.g. {lam: 0.75} or {negatives: n}"))
    dedupe_reports: bool | None = knob(None, "identical report texts in a batch are positives of each other; "
                                             "null = whenever the loss supports it (convirt, gram; not symile)")


@dataclasses.dataclass
class OptimConfig:
    """AdamW (Loshchilov & Hutter, ICLR 2019) with linear warmup and cosine decay."""

    lr: float = knob(3e-4, "peak learning rate")
    weight_decay: float = knob(0.05, "decoupled weight decay (not applied to norms, biases, the logit scale)")
    betas: tuple[float, float] = dataclasses.field(default=(0.9, 0.98), metadata=doc("Adam betas"))
    eps: float = knob(1e-6, "Adam epsilon")
    warmup_steps: int = knob(50, "steps of linear warmup from 0 to lr")
    schedule: Literal["cosine", "constant"] = knob("cosine", "after warmup: cosine decay to min_lr_ratio, or flat")
    min_lr_ratio: float = knob(0.0, "final learning rate as a fraction of lr (cosine)")
    tower_lr: dict[str, float] = dataclasses.field(
        default_factory=dict, metadata=doc("lr multiplier per tower, e.g. {report: 0.1} for a pretrained text tower"))
    grad_accum: int = knob(1, "micro-batches per optimizer step (each micro-batch is its own contrastive batch)")
    clip: float | None = knob(1.0, "clip the global gradient norm to this value; null = no clipping")


@dataclasses.dataclass
class RunConfig:
    """Where the run is written, how long it trains, and how it is checkpointed, logged and validated."""

    out_dir: str = knob("runs/run", "the run directory (config, checkpoints, metrics, model card)")
    max_steps: int = knob(100, "optimizer steps in total")
    ckpt_every: int = knob(50, "write a checkpoint every N steps (and at the end)")
    keep_last: int = knob(2, "checkpoints kept besides the best one")
    seed: int = knob(0, "seed of everything: model init, sampler, augmentations, dropout")
    log_every: int = knob(10, "append a line to metrics.jsonl every N steps")
    val_every: int = knob(50, "validate every N steps (0 = only at the end)")
    best_metric: str = knob("auto", "validation metric that picks the best checkpoint (higher is better); "
                                    "auto = val/zeroshot_auroc_label_mean (mean zero-shot AUROC, every label counting "
                                    "once) when the validation rows have labels the default prompts cover, else "
                                    "val/probe_auroc_mean, else val/r1_mean")
    amp: Literal["none", "bf16", "fp16", "auto"] = knob(
        "none", "mixed precision of the training forward: bf16 on CUDA or CPU (~1.7x for the demo's text tower on an "
                "AVX512-BF16 CPU), fp16 (with loss scaling) on CUDA only, auto = bf16 where the device computes it "
                "natively (CUDA with bf16, CPUs with AVX512-BF16 or AMX), else none")
    compile: bool = knob(False, "torch.compile each encoder")
    max_nonfinite_steps: int = knob(5, "abort after this many consecutive steps with a non-finite loss or gradient")
    threads: int = knob(0, "torch CPU threads (0 = torch's default)")
    deterministic: bool = knob(True, "torch.use_deterministic_algorithms (exact resume and repeat runs)")
    device: Literal["auto", "cpu", "cuda"] = knob("auto", "auto = cuda when available")
    strategy: Literal["ddp", "fsdp"] = knob("ddp", "torchrun with > 1 process: ddp = every rank holds the whole "
                                                   "model; fsdp = the report tower's text model is sharded across "
                                                   "ranks (FSDP2, one unit per transformer layer) and the rest is "
                                                   "DDP, for a text tower too large to replicate (e.g. an LLM)")
    find_unused_parameters: bool = knob(True, "DDP: allow towers without inputs in a batch (missing modalities)")
    sync_batchnorm: bool = knob(True, "DDP on CUDA: batch-norm statistics over all ranks")
    dist_timeout_min: float = knob(60.0, "torch.distributed timeout in minutes")
    progress: bool = knob(True, "show a progress bar")
    tensorboard: bool = knob(True, "write TensorBoard logs when tensorboard is installed")


@dataclasses.dataclass
class TrainConfig:
    """A whole training recipe: data, model architecture, loss, optimizer and run settings."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig, metadata=doc("data and preprocessing"))
    model: ModelConfig = dataclasses.field(
        default_factory=ModelConfig,
        metadata=doc("architecture: a configs/models/*.yaml path, {file: path, ...changes}, or inline"))
    loss: LossConfig = dataclasses.field(default_factory=LossConfig, metadata=doc("contrastive objective"))
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig, metadata=doc("optimizer and schedule"))
    run: RunConfig = dataclasses.field(default_factory=RunConfig, metadata=doc("run directory and loop"))

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-ready data; :func:`train_config_from_dict` reads it back to an equal config."""
        data: dict[str, Any] = to_dict(self)
        return data


class _Loader(yaml.SafeLoader):
    """YAML 1.2 floats: ``1e-3`` is a number (PyYAML's YAML 1.1 rules read it as a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2 floats (``1e-3`` -> 0.001)."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a recipe, inline its model file, apply ``key=value`` overrides, and check everything."""
    path = Path(path)
    try:
        data = parse_yaml(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise MedclrConfigError(f"{path}: cannot read the training config ({err})") from None
    if not isinstance(data, dict):
        raise MedclrConfigError(f"{path}: a training config is a mapping with data, model, loss, optim, run")
    data["model"] = _resolve_model(data.get("model"), path.parent)
    for item in overrides:
        apply_override(data, item)
    try:
        return train_config_from_dict(data)
    except MedclrConfigError as err:
        raise MedclrConfigError(f"{path}: {err}") from None


def train_config_from_dict(data: Any, where: str = "config") -> TrainConfig:
    """Check parsed YAML as a :class:`TrainConfig` (types, unknown keys, required values, the loss)."""
    if isinstance(data, dict) and "model" in data:
        data = {**data, "model": _resolve_model(data["model"], Path.cwd())}
    cfg = from_dict(TrainConfig, data, where)
    model_config_from_dict(to_dict(cfg.model), where=f"{where}: model")  # the model's own checks (towers)
    _check_values(cfg)
    check_loss(cfg.loss)
    return cfg


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` (value parsed as YAML) inside nested dicts, creating missing levels."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise MedclrConfigError(f"override '{item}': expected KEY=VALUE, e.g. optim.lr=1e-3")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise MedclrConfigError(f"override '{key}': cannot parse value {raw!r} ({err})") from None
    parts = key.strip().split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise MedclrConfigError(f"override '{key}': '{'.'.join(parts[: depth + 1])}' is not a section")
        node = child
    node[parts[-1]] = value


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically)."""
    from medclr.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return Path(path)


def config_diff(old: TrainConfig, new: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old, new)}`` for every leaf that differs (dicts are compared leaf by leaf)."""
    out: dict[str, tuple[Any, Any]] = {}
    _diff(old.to_dict(), new.to_dict(), "", out)
    return out


def check_loss(loss: LossConfig) -> None:
    """The loss name is registered and its kwargs are parameters of the loss class."""
    from medclr.losses import LOSSES

    if loss.name not in LOSSES:
        raise MedclrConfigError(f"loss.name: unknown loss '{loss.name}'; valid names: {', '.join(LOSSES.names())}")
    params = inspect.signature(LOSSES.get(loss.name)).parameters
    for key in loss.kwargs:
        if key not in params:
            valid = ", ".join(p for p in params if p != "self")
            raise MedclrConfigError(f"loss.kwargs.{key}: not an argument of the '{loss.name}' loss; valid: {valid}")


def _resolve_model(model: Any, base: Path) -> Any:
    """``model:`` as a path, as ``{file: path, <keys to change>...}`` (deep-merged onto the file), or inline."""
    if isinstance(model, str):
        return _read_model_file(model, base)
    if isinstance(model, dict) and "file" in model:
        changes = {k: v for k, v in model.items() if k != "file"}
        return _merge(_read_model_file(str(model["file"]), base), changes)
    return model


def _merge(base: Any, changes: Any) -> Any:
    if isinstance(base, dict) and isinstance(changes, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in changes.items()}}
    return changes


def _read_model_file(ref: str, base: Path) -> Any:
    """The YAML of a model config referenced by path (relative to ``base`` first, then to the working dir)."""
    candidates = [Path(ref)] if Path(ref).is_absolute() else [base / ref, Path.cwd() / ref]
    for candidate in candidates:
        if candidate.is_file():
            data = parse_yaml(candidate.read_text())
            return data["model"] if isinstance(data, dict) and set(data) == {"model"} else data
    raise MedclrConfigError(f"model: file '{ref}' not found (looked in {', '.join(str(c) for c in candidates)})")


def _check_values(cfg: TrainConfig) -> None:
    """Ranges and required values that the type checks cannot express."""
    checks: list[tuple[bool, str]] = [
        (bool(cfg.data.manifest), "data.manifest: required (a manifest from `medclr prepare`)"),
        (cfg.data.batch_size >= 2, "data.batch_size: needs at least 2 rows for contrastive negatives"),
        (cfg.data.num_workers >= 0, "data.num_workers: must be >= 0"),
        (cfg.data.image_size >= 8, "data.image_size: must be >= 8"),
        (cfg.data.ecg_fs > 0, "data.ecg_fs: must be > 0"),
        (cfg.data.ecg_samples > 0, "data.ecg_samples: must be > 0"),
        (cfg.optim.lr > 0, "optim.lr: must be > 0"),
        (cfg.optim.grad_accum >= 1, "optim.grad_accum: must be >= 1"),
        (cfg.optim.warmup_steps >= 0, "optim.warmup_steps: must be >= 0"),
        (cfg.optim.clip is None or cfg.optim.clip > 0, "optim.clip: must be > 0 or null"),
        (cfg.run.max_steps >= 1, "run.max_steps: must be >= 1"),
        (cfg.run.ckpt_every >= 1, "run.ckpt_every: must be >= 1"),
        (cfg.run.keep_last >= 1, "run.keep_last: must be >= 1"),
        (cfg.run.log_every >= 1, "run.log_every: must be >= 1"),
        (cfg.run.val_every >= 0, "run.val_every: must be >= 0"),
        (cfg.run.max_nonfinite_steps >= 1, "run.max_nonfinite_steps: must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise MedclrConfigError(message)
    unknown = [m for m in cfg.data.modalities or [] if m not in cfg.model.towers]
    if unknown:
        raise MedclrConfigError(f"data.modalities: {unknown} have no tower in the model "
                                f"(towers: {', '.join(cfg.model.towers)})")


def _diff(old: Any, new: Any, prefix: str, out: dict[str, tuple[Any, Any]]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            _diff(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key), out)
    elif old != new:
        out[prefix] = (old, new)
