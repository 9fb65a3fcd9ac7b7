"""Random unit embeddings for the loss tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def unit(n: int, d: int, seed: int, dtype: torch.dtype = torch.float64) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=-1)


def batch(modalities: list[str], n: int, d: int, seed: int = 0, dtype: torch.dtype = torch.float64,
          grad: bool = False) -> dict[str, Tensor]:
    """{modality: [n, d]} unit rows; optionally leaf tensors that require grad."""
    return {m: unit(n, d, seed + 17 * i, dtype).requires_grad_(grad) for i, m in enumerate(modalities)}
