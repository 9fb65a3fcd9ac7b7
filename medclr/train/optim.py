"""AdamW with parameter groups, and the warmup + cosine learning-rate schedule.

**Weight decay only where it regularises.** AdamW (Loshchilov & Hutter, ICLR 2019) decays weights by
``lr * weight_decay * w`` each step, decoupled from the gradient. Decaying a LayerNorm gain pulls it towards 0
(shrinking every activation), decaying a bias or a position/[CLS] embedding just biases them, and decaying the
learned log logit scale would push the temperature to 1. So, as in CLIP/open_clip, only matrices and kernels of
linear/conv layers (``ndim >= 2``, outside norms and embeddings tables of tokens) are decayed.

**Only trainable parameters** are handed to the optimizer: a frozen text base is left out, and with LoRA only
the adapters (and chosen biases) train.

**Per-tower learning rates** (``optim.tower_lr: {report: 0.1}``) multiply the peak rate of one tower, the usual
way to fine-tune a pretrained tower more gently than the randomly initialised ones.

**Schedule**: linear warmup ``lr * (t + 1) / W`` for the first W steps, then cosine decay
``lr * (m + (1 - m) * (1 + cos(pi * p)) / 2)`` with ``p`` going from 0 to 1 over the remaining steps and m the
final fraction (``min_lr_ratio``). E.g. lr 1e-3, W = 10, 110 steps: step 0 -> 1e-4, step 9 -> 1e-3, step 60 ->
5e-4, step 109 -> ~0.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medclr.config import OptimConfig

_NO_DECAY_NAMES = re.compile(r"(^|\.)(cls_token|pos_embed\w*|position_embeddings?|\w*_embed|\w*_embedding|log_scale)$")


def is_norm(module: nn.Module) -> bool:
    """BatchNorm/LayerNorm/GroupNorm and any ``*Norm`` class (e.g. an LLM's RMSNorm)."""
    norms = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
    return isinstance(module, norms) or type(module).__name__.endswith("Norm")


def no_decay_names(model: nn.Module) -> set[str]:
    """Names of parameters that get no weight decay: biases, vectors, norms, token embeddings, the logit scale."""
    out = set()
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            if param.ndim < 2 or is_norm(module) or _NO_DECAY_NAMES.search(full):
                out.add(full)
    return out


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """AdamW groups ``{name, params, weight_decay, lr}`` by (tower, decay) over trainable parameters only."""
    skip = no_decay_names(model)
    groups: dict[str, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        tower = name.split(".")[1] if name.startswith("towers.") else "shared"
        decay = name not in skip
        key = f"{tower}/{'decay' if decay else 'no_decay'}"
        group = groups.setdefault(key, {"name": key, "params": [], "param_names": [],
                                        "weight_decay": cfg.weight_decay if decay else 0.0,
                                        "lr": cfg.lr * cfg.tower_lr.get(tower, 1.0)})
        group["params"].append(param)
        group["param_names"].append(name)
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` (fused on CUDA when available)."""
    groups = param_groups(model, cfg)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    for group in groups:
        del group["param_names"]  # only for inspection; keeps the optimizer state dict primitive
    fused = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,  # type: ignore[arg-type]
                             weight_decay=cfg.weight_decay, fused=fused or None)


@dataclass
class WarmupCosine:
    """``lr factor(step)``: see the module docstring (a class, so the scheduler state stays plain data)."""

    warmup: int
    total: int
    schedule: str = "cosine"
    min_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        if self.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig,
                    max_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR with :class:`WarmupCosine` (stepped once per optimizer step, skipped steps included)."""
    factor = WarmupCosine(cfg.warmup_steps, max_steps, cfg.schedule, cfg.min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
