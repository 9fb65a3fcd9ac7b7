"""Checkpoints that survive ``kill -9`` at any moment, and ``load_model(run_dir)``.

Layout inside a run directory::

    checkpoints/step_000200/
        model.safetensors   weights (see :func:`state_to_save`)
        lora/<modality>/    the report tower's LoRA adapter in PEFT format (adapter_config.json + safetensors)
        train_state.pt      optimizer, scheduler, grad scaler, data position, counters (tensors + primitives)
        rng.pt              Python/numpy/torch RNG state of every rank
        checkpoint.json     step, epoch, validation metrics, config hash
    checkpoints/latest      text: the name of the newest complete checkpoint folder
    checkpoints/best        text: the folder with the best validation metric

**Atomicity.** A checkpoint is written into ``checkpoints/.tmp-step_...``, renamed to its final name (a rename
is atomic), and only then is ``latest`` replaced (write a temporary file + ``os.replace``). A kill before the
rename leaves a temporary folder that the next start deletes; a kill between the rename and the pointer update
leaves ``latest`` at the previous complete checkpoint. Either way ``latest`` names a whole checkpoint.

**What is saved.** All parameters and buffers *except* the frozen weights of a Hugging Face text base
(``towers.<m>.encoder.model.*`` without ``requires_grad``): a frozen 1.5B LLM is rebuilt from its hub id /
local folder and pinned revision recorded in the model config, and only its LoRA adapters (and any trainable
parameter) are stored. Always full, unsharded tensors: under ``run.strategy: fsdp`` the text tower's shards are
gathered first (:func:`full_state`), so a checkpoint loads the same into a plain model. Loading rebuilds the
model from the run's ``model.yaml`` and checks that the saved keys are exactly the keys this rule selects.

**No unpickling of arbitrary objects**: weights are safetensors, and ``train_state.pt``/``rng.pt`` hold only
tensors and primitive containers, loaded with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from medclr.atomic import atomic_path
from medclr.errors import MedclrError, MedclrInputError

log = logging.getLogger(__name__)

CKPT_DIR = "checkpoints"
WEIGHTS = "model.safetensors"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def frozen_base_prefixes(model: nn.Module) -> list[str]:
    """``towers.<m>.encoder.model.`` of every Hugging Face text tower (rebuilt from its source, not saved)."""
    from medclr.models.encoders.report import ReportEncoder

    return [f"{name}.model." for name, module in model.named_modules() if isinstance(module, ReportEncoder)]


def state_to_save(model: nn.Module) -> dict[str, Tensor]:
    """The model state minus frozen text-base parameters and buffers (see the module docstring)."""
    prefixes = tuple(frozen_base_prefixes(model))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes) or k in trainable}


def full_state(model: nn.Module) -> dict[str, Tensor]:
    """:func:`state_to_save` as contiguous, unshared CPU copies. Weights sharded by FSDP (DTensors) are
    all-gathered into full tensors, so with ``run.strategy: fsdp`` every rank must call this (same order)."""
    from torch.distributed.tensor import DTensor

    out = {}
    for key, value in state_to_save(model).items():
        full = value.full_tensor() if isinstance(value, DTensor) else value
        out[key] = full.detach().to("cpu", copy=True).contiguous()
    return out


def save_weights(model: nn.Module, path: Path, tensors: dict[str, Tensor] | None = None) -> None:
    """:func:`full_state` (or ``tensors``, its output gathered beforehand) as safetensors."""
    from safetensors.torch import save_file

    tensors = full_state(model) if tensors is None else tensors
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "producer": "medclr"})


def load_weights(model: nn.Module, path: Path) -> None:
    """Load :func:`save_weights` output; the keys must be exactly those :func:`state_to_save` selects."""
    from safetensors.torch import load_file

    saved = load_file(str(path))
    expected = set(state_to_save(model))
    missing, unexpected = sorted(expected - set(saved)), sorted(set(saved) - expected)
    if missing or unexpected:
        raise MedclrInputError(path, f"weights do not match the model (missing: {missing[:5]}, unexpected: "
                                     f"{unexpected[:5]})", "load it with the model.yaml of the same run")
    model.load_state_dict(saved, strict=False)


def step_name(step: int) -> str:
    return f"step_{step:06d}"


def read_pointer(run_dir: Path, which: str) -> Path | None:
    """The checkpoint folder named by ``checkpoints/<which>`` (latest | best), if it exists."""
    pointer = run_dir / CKPT_DIR / which
    if not pointer.is_file():
        return None
    folder = run_dir / CKPT_DIR / pointer.read_text().strip()
    return folder if (folder / "checkpoint.json").is_file() else None


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint: the ``latest`` pointer, else the highest complete ``step_*`` folder."""
    found = read_pointer(run_dir, "latest")
    if found is not None:
        return found
    steps = sorted(_complete_steps(run_dir), key=lambda p: int(p.name[5:]))
    return steps[-1] if steps else None


def remove_partial(run_dir: Path) -> None:
    """Delete temporary checkpoint folders left by a killed run."""
    for tmp in (run_dir / CKPT_DIR).glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def write_checkpoint(run_dir: Path, step: int, model: nn.Module, state: dict[str, Any], rng: dict[str, Any],
                     meta: dict[str, Any], weights: dict[str, Tensor] | None = None) -> Path:
    """Write a complete checkpoint atomically and advance ``latest`` (main process only). ``weights``: the
    model's :func:`full_state` when it was gathered beforehand (sharded models); else it is taken here."""
    root = run_dir / CKPT_DIR
    final, tmp = root / step_name(step), root / f".tmp-{step_name(step)}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(model, tmp / WEIGHTS, weights)
    _save_adapters(model, tmp / "lora", weights)
    torch.save(state, tmp / "train_state.pt")
    torch.save(rng, tmp / "rng.pt")
    (tmp / "checkpoint.json").write_text(json.dumps({**meta, "step": step}, indent=1, default=str))
    if final.exists():  # the same step written again (a resumed run that re-reached it)
        shutil.rmtree(final)
    os.rename(tmp, final)
    set_pointer(run_dir, "latest", final)
    return final


def set_pointer(run_dir: Path, which: str, folder: Path) -> None:
    with atomic_path(run_dir / CKPT_DIR / which) as tmp:
        tmp.write_text(folder.name + "\n")


def prune(run_dir: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints, always keeping the ``best`` one."""
    best = read_pointer(run_dir, "best")
    steps = sorted(_complete_steps(run_dir), key=lambda p: int(p.name[5:]))
    for folder in steps[:-keep_last]:
        if best is None or folder.name != best.name:
            shutil.rmtree(folder, ignore_errors=True)


def read_train_state(folder: Path, device: torch.device) -> tuple[dict[str, Any], dict[str, Any]]:
    """(train state, RNG states) of a checkpoint, loaded with ``weights_only=True``."""
    try:
        state = torch.load(folder / "train_state.pt", map_location=device, weights_only=True)
        rng = torch.load(folder / "rng.pt", map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as err:
        raise MedclrInputError(folder, f"unreadable checkpoint ({str(err).splitlines()[0]})",
                               "resume from an earlier checkpoint (edit checkpoints/latest)") from None
    return state, rng


def load_model(run_dir: str | os.PathLike[str], checkpoint: str = "best", device: str | torch.device = "cpu") -> Any:
    """Rebuild a run's :class:`~medclr.models.MedClr` from ``model.yaml`` and load a checkpoint's weights.

    ``checkpoint``: ``best`` (falls back to ``latest`` when no validation ran), ``latest``, or a folder name
    such as ``step_000200``. The model is returned in eval mode on ``device``.
    """
    from medclr.models import build_model, load_model_config

    run = Path(run_dir)
    if not (run / "model.yaml").is_file():
        raise MedclrInputError(run, "not a medclr run directory (no model.yaml)", "pass the folder `medclr train` "
                                                                                  "printed")
    folder = _choose(run, checkpoint)
    model = build_model(load_model_config(run / "model.yaml"))
    load_weights(model, folder / WEIGHTS)
    return model.to(device).eval()


def _choose(run: Path, checkpoint: str) -> Path:
    if checkpoint in ("best", "latest"):
        folder = read_pointer(run, checkpoint) if checkpoint == "best" else None
        folder = folder or latest_checkpoint(run)
    else:
        folder = run / CKPT_DIR / checkpoint
        folder = folder if (folder / "checkpoint.json").is_file() else None
    if folder is None:
        raise MedclrError(f"{run}: no checkpoint '{checkpoint}' (the run wrote none yet; see {run / CKPT_DIR})")
    return folder


def _complete_steps(run_dir: Path) -> list[Path]:
    root = run_dir / CKPT_DIR
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / "checkpoint.json").is_file()]


def _save_adapters(model: nn.Module, folder: Path, weights: dict[str, Tensor] | None = None) -> None:
    """Each PEFT-wrapped text base's adapter in PEFT's own format (``PeftModel.from_pretrained`` reads it);
    taken from ``weights`` (gathered full tensors) when given, else from the module."""
    from medclr.models.encoders.report import ReportEncoder

    for name, module in model.named_modules():
        if isinstance(module, ReportEncoder) and hasattr(module.model, "peft_config"):
            modality = name.split(".")[1] if name.startswith("towers.") else name
            kwargs = {}
            if weights is not None:
                prefix = f"{name}.model."
                kwargs["state_dict"] = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
            module.model.save_pretrained(str(folder / modality), **kwargs)  # type: ignore[operator]
