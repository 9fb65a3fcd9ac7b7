"""Load pretrained weights from a local file or folder into an encoder, mapping the keys of common sources.

Safe formats only: ``.safetensors`` files, or PyTorch files read with ``torch.load(weights_only=True)`` (plain
tensors and containers; pickled objects are refused). Key mapping, applied in order:

1. unwrap ``{"state_dict": ...}`` / ``{"model": ...}`` containers; keep only keys under ``select_prefix`` if given;
2. strip wrapper prefixes (``module.`` from DataParallel/DDP, ``encoder.``, ``backbone.``, ``model.``);
3. the encoder's own mapping (e.g. timm ViT -> MONAI ViT names, torchvision DenseNet -> MONAI DenseNet);
4. input-channel adaptation: a 3-channel (RGB) first convolution becomes the 1-channel one by summing its input
   channels, which gives the same response to a grey image replicated over R, G and B.

Every load logs how many tensors loaded, which target keys stayed missing and which source keys were unused.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medclr.errors import MedclrInputError

log = logging.getLogger(__name__)

StateDict = dict[str, Tensor]
WRAPPER_PREFIXES = ("module.", "encoder.", "backbone.", "model.", "_orig_mod.")
_CONTAINERS = ("state_dict", "model_state_dict", "model", "module", "net")
_FILE_PREFERENCE = ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth")
_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


@dataclass
class LoadReport:
    """What a pretrained load did: keys loaded, target keys left at their initial value, source keys unused."""

    loaded: list[str]
    missing: list[str]
    unexpected: list[str]


def read_state_dict(path: str | Path) -> StateDict:
    """Tensors of a ``.safetensors`` / ``.pt`` / ``.pth`` / ``.bin`` file, or of the one weights file in a folder."""
    file = _weights_file(Path(path))
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(file), device="cpu"))
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError...
        raise MedclrInputError(
            file, f"cannot read as a weights-only PyTorch file ({type(err).__name__}: {str(err)[:200]})",
            "save plain tensors (torch.save(model.state_dict(), path)) or convert to .safetensors",
        ) from None
    for _ in range(3):  # {"state_dict": {...}, "epoch": 3} and nested variants
        inner = next((obj[k] for k in _CONTAINERS if isinstance(obj, dict) and isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise MedclrInputError(file, f"holds a {type(obj).__name__}, not a state dict", "save model.state_dict()")
    return {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}


def _weights_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise MedclrInputError(path, "pretrained weights not found", "give a weights file or a folder holding one")
    for name in _FILE_PREFERENCE:
        if (path / name).is_file():
            return path / name
    candidates = sorted(p for p in path.iterdir() if p.suffix in _SUFFIXES)
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise MedclrInputError(path, f"expected one weights file ({'/'.join(_SUFFIXES)}); found: {found}",
                               "point 'pretrained' at the file itself")
    return candidates[0]


def select_prefix(sd: StateDict, prefix: str) -> StateDict:
    """Keys under ``prefix`` with the prefix removed (e.g. ``visual.`` of a whole CLIP checkpoint)."""
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def strip_prefixes(sd: StateDict, prefixes: Iterable[str] = WRAPPER_PREFIXES) -> StateDict:
    """Remove wrapper prefixes (repeatedly: ``module.encoder.x`` -> ``x``)."""
    out = {}
    for key, value in sd.items():
        changed = True
        while changed:
            changed = False
            for p in prefixes:
                if key.startswith(p):
                    key, changed = key[len(p):], True
        out[key] = value
    return out


def rename(sd: StateDict, rules: Iterable[tuple[str, str]]) -> StateDict:
    """Apply regex substitutions ``(pattern, replacement)`` to every key."""
    compiled = [(re.compile(p), r) for p, r in rules]
    out = {}
    for key, value in sd.items():
        for pattern, repl in compiled:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


def resize_pos_embed(pos: Tensor, new_grid: tuple[int, ...]) -> Tensor:
    """Resample a learned position table ``[1, N, D]`` (square 2-D grid, or 1-D) to ``prod(new_grid)`` positions.

    2-D tables are interpolated bicubically on their grid, as in timm and DeiT fine-tuning at a new resolution.
    """
    n, d = pos.shape[1], pos.shape[2]
    if n == math.prod(new_grid):
        return pos
    if len(new_grid) == 1:
        return F.interpolate(pos.transpose(1, 2), size=new_grid[0], mode="linear", align_corners=False).transpose(1, 2)
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"cannot resize a position table of {n} positions: not a square grid")
    grid = pos.reshape(1, side, side, d).permute(0, 3, 1, 2)  # [1, D, s, s]
    grid = F.interpolate(grid.float(), size=new_grid, mode="bicubic", align_corners=False).to(pos.dtype)
    return grid.permute(0, 2, 3, 1).reshape(1, math.prod(new_grid), d)


def adapt_input_channels(sd: StateDict, target: StateDict) -> StateDict:
    """Sum an RGB first convolution's 3 input channels into the target's 1 (``[O, 3, k, k] -> [O, 1, k, k]``)."""
    out = dict(sd)
    for key, value in sd.items():
        want = target.get(key)
        if want is None or value.ndim < 3 or value.shape == want.shape:
            continue
        if value.shape[1] == 3 and want.shape[1] == 1 and value.shape[2:] == want.shape[2:]:
            out[key] = value.sum(dim=1, keepdim=True)
    return out


def load_into(
    module: nn.Module,
    sd: StateDict,
    *,
    source: str,
    mapper: Callable[[StateDict], StateDict] | None = None,
    prefix: str | None = None,
    strict: bool = False,
) -> LoadReport:
    """Map ``sd`` onto ``module``'s names and load it; shape mismatches are errors, missing keys are logged.

    ``strict=True`` also fails when a target key stays missing. Nothing matching at all is always an error: the
    file is then for another architecture (the message shows a few of its keys).
    """
    if prefix:
        sd = select_prefix(sd, prefix)
    sd = strip_prefixes(sd)
    if mapper is not None:
        sd = mapper(sd)
    target = module.state_dict()
    sd = adapt_input_channels(sd, target)
    loaded = [k for k in sd if k in target]
    bad = [f"{k}: {tuple(sd[k].shape)} vs {tuple(target[k].shape)}" for k in loaded if sd[k].shape != target[k].shape]
    if bad:
        raise MedclrInputError(source, f"weights do not fit this architecture ({'; '.join(bad[:3])})",
                               "match the encoder config (sizes, patch size) to the checkpoint")
    missing = [k for k in target if k not in sd]
    unexpected = [k for k in sd if k not in target]
    if not loaded:
        raise MedclrInputError(source, f"no weights matched this encoder (file keys: {', '.join(list(sd)[:5])})",
                               "check the architecture, or set 'pretrained_prefix' to the encoder's key prefix")
    if strict and missing:
        raise MedclrInputError(source, f"{len(missing)} weights missing (e.g. {', '.join(missing[:5])})",
                               "use a complete checkpoint or set pretrained_strict: false")
    module.load_state_dict({k: sd[k] for k in loaded}, strict=False)
    log.info("loaded %d tensors from %s (%d missing: %s; %d unused: %s)", len(loaded), source, len(missing),
             ", ".join(missing[:5]), len(unexpected), ", ".join(unexpected[:5]))
    return LoadReport(loaded=loaded, missing=missing, unexpected=unexpected)
