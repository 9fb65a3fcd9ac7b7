"""Global-batch negatives across ranks: gather embeddings **with** their gradient.

Contrastive losses get better with more negatives, so under ``torchrun`` every loss in :mod:`medclr.losses`
compares its own rows with the rows of every rank. The gather must keep the gradient: GRAM's reference code
gathers with plain ``torch.distributed.all_gather`` (no gradient), which silently turns the other ranks' rows
into constants and changes the objective. :func:`gather_with_grad` is a differentiable all-gather whose backward
sums, over ranks, the gradient each rank computed for every slice and hands each rank the sum for its own slice.

Convention (the same as open_clip's "local loss" with gathered features): each rank returns the loss of **its
own** anchor rows against the candidates of **all** ranks, normalised by the global row count and multiplied by
the world size R. Then

* the mean of the R rank losses equals the single-process loss on the concatenated batch, and
* the gradient each rank receives for its own embeddings is R x the single-process gradient of those rows;
  DistributedDataParallel averages gradients over ranks (divides by R), so parameters see exactly the
  single-process gradient.

Worked example: 2 ranks with 3 rows each. Rank 0 computes the 3 x 6 logits of its rows against all 6 candidates,
sums the 3 row losses and multiplies by 2 / 6; rank 1 does the same for its rows. (L0 + L1) / 2 is the mean of
all 6 row losses: the 1-process loss. ``tests/losses/test_distributed.py`` checks this on CPU with gloo.

Ranks may hold different numbers of rows (the last batch of an epoch): rows are padded for the collective and
the padding is cut off again. Every rank must call the loss with the same modality keys (a modality that no row
of one rank has must still be passed, as zero rows marked absent in ``present``), or the collectives mismatch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def _sizes(n_local: int, device: torch.device) -> list[int]:
    """Row counts of every rank, in rank order."""
    mine = torch.tensor([n_local], dtype=torch.int64, device=device)
    every = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    return [int(s.item()) for s in every]


def _pad_rows(x: Tensor, rows: int) -> Tensor:
    if x.shape[0] == rows:
        return x
    pad = x.new_zeros((rows - x.shape[0], *x.shape[1:]))
    return torch.cat([x, pad], dim=0)  # keeps the gradient of x


class _AllGather(torch.autograd.Function):
    """All-gather of equally sized ``[m, ...]`` tensors; backward sums the gradients over ranks (all-reduce)
    and returns this rank's slice. (``torch.distributed.nn.functional.all_gather`` does the same but is
    deprecated in torch 2.13; gloo has no reduce-scatter on every build, all-reduce works everywhere.)"""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        chunks = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(chunks, x.contiguous())
        return torch.cat(chunks, dim=0)  # [R * m, ...]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: Tensor) -> Tensor:
    """``[n_r, ...]`` on each rank -> ``[sum_r n_r, ...]`` in rank order; gradients flow back to every rank.

    Without an initialised multi-rank process group this returns ``x`` itself.
    """
    if not is_distributed():
        return x
    sizes = _sizes(x.shape[0], x.device)
    rows = max(sizes)
    gathered = _AllGather.apply(_pad_rows(x, rows))  # [R * max_n, ...]
    return torch.cat([gathered[r * rows : r * rows + n] for r, n in enumerate(sizes)], dim=0)


def gather_no_grad(x: Tensor) -> Tensor:
    """Like :func:`gather_with_grad` for tensors without a gradient (masks, group ids); bools survive gloo."""
    if not is_distributed():
        return x
    sizes = _sizes(x.shape[0], x.device)
    wire = x.to(torch.int64) if x.dtype == torch.bool else x
    padded = _pad_rows(wire.detach(), max(sizes))
    chunks = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(chunks, padded.contiguous())
    out = torch.cat([chunk[:n] for chunk, n in zip(chunks, sizes, strict=True)], dim=0)
    return out.to(x.dtype)


def rank_offset(n_local: int, device: torch.device) -> int:
    """Index of this rank's first row in the gathered (rank-ordered) batch."""
    if not is_distributed():
        return 0
    return sum(_sizes(n_local, device)[: dist.get_rank()])


def broadcast_from_rank0(x: Tensor) -> Tensor:
    """Rank 0's value of ``x`` on every rank (e.g. Symile's random permutations); ``x`` itself otherwise."""
    if not is_distributed():
        return x
    out = x.clone().contiguous()
    dist.broadcast(out, src=0)
    return out
