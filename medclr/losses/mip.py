"""The multilinear inner product (MIP) and its all-tuples log-sum-exp, computed in chunks.

``MIP(x, y, z) = sum_d x[d] * y[d] * z[d]`` generalises the dot product to k vectors (Saporta et al., "Contrasting
with Symile", NeurIPS 2024). Example: x = (1, 2), y = (3, 1), z = (1, 1) -> 1*3*1 + 2*1*1 = 5.

Symile's ``n_squared`` negatives score anchor row i against **every** tuple (j_1, ..., j_{k-1}) of the other
modalities' N rows: N^(k-1) candidates. Materialising them costs ``[N^(k-1), D]`` products plus ``[n, N^(k-1)]``
logits (B = 1024, k = 3, D = 512: 2 GiB + 4 GiB, and as much again for the gradients). The cross-entropy needs
only ``logsumexp_t(s * MIP(x_i, tuple_t))`` per row, so :func:`mip_logsumexp` streams over chunks of tuples,
accumulating ``lse = logaddexp(lse, logsumexp(chunk))``, and its backward recomputes each chunk (softmax weights
``exp(z - lse)``) instead of storing it: memory is one chunk, time is the same O(n N^(k-1) D).

Tuple order (for :func:`materialized_logits`): row-major over (j_1, ..., j_{k-1}), the order of
``itertools.product(range(N), repeat=k-1)``; the true tuple of row i sits at flat index ``i * (1 + N + ... +
N^(k-2))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

DEFAULT_CHUNK_ELEMENTS = 1 << 22  # ~16 MiB of float32 per intermediate of one chunk


def product(vectors: Sequence[Tensor]) -> Tensor:
    """Element-wise product of equally shaped tensors (not in place: autograd)."""
    out = vectors[0]
    for v in vectors[1:]:
        out = out * v
    return out


def mip(vectors: Sequence[Tensor]) -> Tensor:
    """Row-wise MIP of k tensors ``[n, D]`` -> ``[n]``."""
    return product(vectors).sum(dim=-1)


def _prefixes(head: Sequence[Tensor], n_rows: int, start: int, stop: int, like: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Products of the ``head`` modalities' rows for flat prefix indices [start, stop) -> ``[c, D]`` + indices."""
    flat = torch.arange(start, stop, device=like.device)
    indices: list[Tensor] = []
    for _ in head:  # the last head modality varies fastest
        indices.append(flat % n_rows)
        flat = flat // n_rows
    indices.reverse()
    if not head:
        return like.new_ones((stop - start, like.shape[-1])), indices
    return product([h[ix] for h, ix in zip(head, indices, strict=True)]), indices


def _chunk_size(n: int, n_rows: int, dim: int, budget: int) -> int:
    return max(1, budget // max(1, n * max(n_rows, dim)))


class _MipLogSumExp(torch.autograd.Function):
    """lse_i = logsumexp over all tuples of s * MIP(x_i, o_1[j_1], ..., o_m[j_m]); chunked forward and backward."""

    @staticmethod
    def forward(ctx: Any, scale: Tensor, x: Tensor, budget: int, *others: Tensor) -> Tensor:
        head, last = others[:-1], others[-1]
        n, n_rows = x.shape[0], last.shape[0]
        n_prefix, step = n_rows ** len(head), _chunk_size(n, n_rows, x.shape[1], budget)
        lse = x.new_full((n,), float("-inf"))
        for start in range(0, n_prefix, step):
            pre, _ = _prefixes(head, n_rows, start, min(n_prefix, start + step), x)  # [c, D]
            z = scale * ((x[:, None, :] * pre[None]) @ last.T)  # [n, c, N]
            lse = torch.logaddexp(lse, torch.logsumexp(z.reshape(n, -1), dim=1))
        ctx.save_for_backward(scale, x, lse, *others)
        ctx.budget = budget
        return lse

    @staticmethod
    def backward(ctx: Any, grad_lse: Tensor) -> tuple[Tensor | None, ...]:
        scale, x, lse, *others = ctx.saved_tensors
        head, last = others[:-1], others[-1]
        n, n_rows = x.shape[0], last.shape[0]
        n_prefix, step = n_rows ** len(head), _chunk_size(n, n_rows, x.shape[1], ctx.budget)
        grad_scale, grad_x = torch.zeros_like(scale), torch.zeros_like(x)
        grad_head, grad_last = [torch.zeros_like(h) for h in head], torch.zeros_like(last)
        for start in range(0, n_prefix, step):
            pre, indices = _prefixes(head, n_rows, start, min(n_prefix, start + step), x)  # [c, D]
            xp = x[:, None, :] * pre[None]  # [n, c, D]
            m = xp @ last.T  # [n, c, N] MIPs
            w = (scale * m).sub_(lse[:, None, None]).exp_().mul_(grad_lse[:, None, None])  # softmax x upstream
            grad_scale = grad_scale + w.reshape(-1).dot(m.reshape(-1))
            del m
            w.mul_(scale)
            g_xp = w @ last  # [n, c, D]
            grad_last += w.reshape(-1, n_rows).T @ xp.reshape(-1, x.shape[1])  # [N, D]
            grad_x += (g_xp * pre[None]).sum(dim=1)
            g_pre = (g_xp * x[:, None, :]).sum(dim=0)  # [c, D]
            for h, (grad_h, ix) in enumerate(zip(grad_head, indices, strict=True)):
                rest = [head[o][indices[o]] for o in range(len(head)) if o != h]
                grad_h.index_add_(0, ix, g_pre * product(rest) if rest else g_pre)
        needs = ctx.needs_input_grad
        return (grad_scale if needs[0] else None, grad_x if needs[1] else None, None, *grad_head, grad_last)


def mip_logsumexp(scale: Tensor, x: Tensor, others: Sequence[Tensor],
                  chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> Tensor:
    """``[n]``: logsumexp over all N^(k-1) tuples of the other modalities of ``scale * MIP(x_i, tuple)``.

    ``x: [n, D]``; ``others``: k-1 tensors ``[N, D]``; memory per chunk ~ ``chunk_elements`` elements per
    intermediate, never ``[n, N^(k-1)]``.
    """
    if not others:
        raise ValueError("mip_logsumexp needs at least one other modality")
    return _MipLogSumExp.apply(scale, x, int(chunk_elements), *others)


def materialized_logits(scale: Tensor, x: Tensor, others: Sequence[Tensor]) -> Tensor:
    """``[n, N^(k-1)]`` all-tuple logits at once (the naive baseline; tuple order in the module docstring)."""
    dim = others[0].shape[1]
    tuples = others[0]
    for o in others[1:]:
        tuples = (tuples[:, None, :] * o[None, :, :]).reshape(-1, dim)  # [N^m, D]
    return scale * x @ tuples.T


def true_tuple_index(rows: Tensor, n_rows: int, n_others: int) -> Tensor:
    """Flat index of tuple (i, i, ..., i) in :func:`materialized_logits`' order."""
    stride = sum(n_rows**p for p in range(n_others))
    return rows * stride


def shuffled_logits(scale: Tensor, x: Tensor, others: Sequence[Tensor], perms: Sequence[Tensor],
                    target: Tensor, positive: Tensor) -> Tensor:
    """``[n, N]`` Symile ``n`` logits: candidate j = prod_m others_m[perm_m[j]]; true tuples on the targets.

    ``positive: [n]`` holds the true-tuple MIPs of the anchor rows; ``target: [n]`` their columns.
    """
    shuffled = product([o[p] for o, p in zip(others, perms, strict=True)])  # [N, D]
    logits = scale * x @ shuffled.T  # [n, N]
    return logits.scatter(1, target[:, None], (scale * positive)[:, None])
