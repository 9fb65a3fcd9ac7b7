"""GRAM: contrastive alignment of k modalities by the volume of the parallelotope they span.

Cicchetti, Grassucci, Sigillo & Comminiello, "Gramian Multimodal Representation Learning and Alignment", ICLR
2025. Aligning every modality to one anchor (ImageBind-style) does not align the others with each other; GRAM
scores a whole tuple of k unit vectors v_1..v_k by the volume of the parallelotope they span::

    vol(v_1, ..., v_k) = sqrt(det G),   G_ab = <v_a, v_b>   (the k x k Gram matrix)

Aligned tuples are nearly parallel, so their volume is ~0; unrelated ones are ~orthogonal, volume ~1.
For anchor row i (``anchor``, by default the report) and the tuple of the other modalities of row j::

    logits[i, j] = -s * vol(anchor_i, others_j)
    loss = (CE(logits, arange, label_smoothing) + CE(logits.T, arange, label_smoothing)) / 2

Closed forms for all B x B (i, j) at once from two [B, D] x [D, B] products (no [B, B, k, k] tensor):

* k = 2: det = |a|^2 |b|^2 - <a, b>^2                         (unit vectors: 1 - c^2 = sin^2 of the angle)
* k = 3: det = g11 g22 g33 + 2 c12 c13 c23 - g11 c23^2 - g22 c13^2 - g33 c12^2
  (unit vectors: 1 + 2 c12 c13 c23 - c12^2 - c13^2 - c23^2), where c23 = <o1_j, o2_j> depends on j only;
* k > 3: the batched determinant of the [B, B, k, k] Gram matrices (``torch.linalg.det``).

Worked example (k = 3): a = (1, 0, 0), o1 = (0, 1, 0), o2 = (0, 0, 1) are orthonormal: det = 1, vol = 1 (the unit
cube). a = o1 = o2: c12 = c13 = c23 = 1 and det = 1 + 2 - 3 = 0, vol = 0.

Numerics: computed in float32 (float64 stays float64). Rounding can make det slightly negative, so it is clamped
at 0 before the square root; and sqrt has an infinite slope at 0, so :func:`safe_sqrt` uses the gradient
``1 / (2 sqrt(max(det, eps)))`` where det > 0 and 0 where det <= 0 (the clamped side). Gradients stay finite
when vectors coincide (det = 0), which happens exactly when the model aligns a tuple perfectly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from medclr.errors import MedclrInputError
from medclr.losses.base import (
    LOSSES,
    Masks,
    MultimodalLoss,
    as_scale,
    check_embeddings,
    compute_dtype,
    positive_mask,
    select_rows,
    zero_loss,
)

SQRT_EPS = 1e-8


class _SafeSqrt(torch.autograd.Function):
    """sqrt(max(x, 0)) with gradient 1 / (2 sqrt(max(x, eps))) for x > 0 and 0 for x <= 0."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.eps = eps
        return x.clamp_min(0).sqrt()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        slope = x.clamp_min(ctx.eps).rsqrt_().mul_(0.5)  # 1 / (2 sqrt(max(x, eps)))
        return slope.mul_(grad).masked_fill_(x <= 0, 0.0), None


def safe_sqrt(x: Tensor, eps: float = SQRT_EPS) -> Tensor:
    """``sqrt(clamp(x, min=0))`` with finite gradients at and below 0 (see the module docstring)."""
    return _SafeSqrt.apply(x, eps)


def _det_k2(a: Tensor, o: Tensor) -> Tensor:
    c = a @ o.T  # [A, T]
    return a.pow(2).sum(-1)[:, None] * o.pow(2).sum(-1)[None, :] - c.pow(2)


class _Det3(torch.autograd.Function):
    """det of [[g11, c12, c13], [c12, g22, c23], [c13, c23, g33]] for [A, T] c12, c13; [A, 1] g11; [1, T] rest.

    Hand-written forward and backward (in-place, few [A, T] passes): autograd of the formula made ~60 [A, T]
    elementwise passes, as slow as the two [A, D] x [D, T] products it follows.
    """

    @staticmethod
    def forward(ctx: Any, c12: Tensor, c13: Tensor, g11: Tensor, g22: Tensor, g33: Tensor, c23: Tensor) -> Tensor:
        ctx.save_for_backward(c12, c13, g11, g22, g33, c23)
        det = g11 * (g22 * g33 - c23 * c23)  # [A, T]
        det.addcmul_(c12 * c13, c23, value=2.0)
        det.addcmul_(c13 * c13, g22, value=-1.0)
        return det.addcmul_(c12 * c12, g33, value=-1.0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, ...]:
        c12, c13, g11, g22, g33, c23 = ctx.saved_tensors
        d12 = (c13 * c23).addcmul_(c12, g33, value=-1.0).mul_(grad).mul_(2.0)  # d det / d c12 = 2 (c13 c23 - g33 c12)
        d13 = (c12 * c23).addcmul_(c13, g22, value=-1.0).mul_(grad).mul_(2.0)
        d11 = grad @ (g22 * g33 - c23 * c23).T  # [A, 1]
        weighted = g11.T @ grad  # [1, T] sum_i g11_i grad_ij
        g_c12 = grad * c12  # [A, T]
        d22 = g33 * weighted - (grad * c13 * c13).sum(0, keepdim=True)
        d33 = g22 * weighted - (g_c12 * c12).sum(0, keepdim=True)
        d23 = 2.0 * ((g_c12 * c13).sum(0, keepdim=True) - c23 * weighted)
        return d12, d13, d11, d22, d33, d23


def _det_k3(a: Tensor, o1: Tensor, o2: Tensor) -> Tensor:
    c12, c13 = a @ o1.T, a @ o2.T  # [A, T] anchor-other cosines
    c23 = (o1 * o2).sum(-1)[None, :]  # [1, T] within-tuple cosine
    g11 = a.pow(2).sum(-1)[:, None]  # [A, 1]
    g22, g33 = o1.pow(2).sum(-1)[None, :], o2.pow(2).sum(-1)[None, :]  # [1, T]
    det: Tensor = _Det3.apply(c12, c13, g11, g22, g33, c23)
    return det


def _det_batched(a: Tensor, others: Sequence[Tensor]) -> Tensor:
    n_a, n_t, k = a.shape[0], others[0].shape[0], len(others) + 1
    stacked = torch.stack(list(others), dim=1)  # [T, k-1, D]
    cross = torch.stack([a @ o.T for o in others], dim=-1)  # [A, T, k-1]
    inner = (stacked @ stacked.transpose(1, 2))[None].expand(n_a, n_t, k - 1, k - 1)  # [A, T, k-1, k-1]
    corner = a.pow(2).sum(-1)[:, None, None].expand(n_a, n_t, 1)  # [A, T, 1]
    first = torch.cat([corner, cross], dim=-1)[..., None, :]  # [A, T, 1, k]
    rest = torch.cat([cross[..., None], inner], dim=-1)  # [A, T, k-1, k]
    return torch.linalg.det(torch.cat([first, rest], dim=-2))  # [A, T]


def gram_determinants(anchor: Tensor, others: Sequence[Tensor]) -> Tensor:
    """``[A, T]``: det of the Gram matrix of (anchor_i, others_1[j], ..., others_m[j]) for all i, j."""
    if not others:
        raise ValueError("GRAM needs at least one modality besides the anchor")
    dtype = compute_dtype(anchor)
    a, os_ = anchor.to(dtype), [o.to(dtype) for o in others]
    if len(os_) == 1:
        return _det_k2(a, os_[0])
    if len(os_) == 2:
        return _det_k3(a, *os_)
    return _det_batched(a, os_)


def gram_volumes(anchor: Tensor, others: Sequence[Tensor]) -> Tensor:
    """``[A, T]`` volumes ``sqrt(max(det G, 0))`` for anchor rows i against tuples j."""
    return safe_sqrt(gram_determinants(anchor, others))


def gram_volumes_det(anchor: Tensor, others: Sequence[Tensor]) -> Tensor:
    """The same via ``torch.linalg.det`` for every k (the naive path; benchmarks and tests)."""
    dtype = compute_dtype(anchor)
    return safe_sqrt(_det_batched(anchor.to(dtype), [o.to(dtype) for o in others]))


@LOSSES.register("gram")
class GramLoss(MultimodalLoss):
    """GRAM volume contrastive loss: ``anchor`` against the tuple of all other modalities of ``emb``."""

    def __init__(self, anchor: str = "report", label_smoothing: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1); got {label_smoothing}")
        self.anchor, self.label_smoothing = anchor, label_smoothing

    def extra_repr(self) -> str:
        return f"anchor={self.anchor!r}, label_smoothing={self.label_smoothing}"

    def forward(
        self, emb: Mapping[str, Tensor], logit_scale: Tensor | float, present: Masks | None = None,
        groups: Masks | None = None,
    ) -> dict[str, Tensor]:
        check_embeddings(emb, [self.anchor])
        others = [m for m in emb if m != self.anchor]
        if not others:
            raise MedclrInputError(None, f"GRAM needs modalities besides the anchor '{self.anchor}'; got {list(emb)}")
        rows = select_rows(emb, [self.anchor, *others], present, groups)
        out = {"n/complete": torch.tensor(rows.n_global)}
        if rows.n_global == 0:
            out["loss"] = zero_loss(emb)
            return out
        scale = as_scale(logit_scale, rows.local[self.anchor])
        vol = gram_volumes(rows.local[self.anchor], [rows.every[m] for m in others])  # [n, N] anchor i, tuple j
        logits = -scale * vol
        if rows.single:  # local rows are all rows: the other direction is the transpose
            logits_t = logits.T
        else:  # local tuples j against the anchors of every rank
            logits_t = -scale * gram_volumes(rows.every[self.anchor], [rows.local[m] for m in others]).T
        pos = positive_mask(rows, (self.anchor,), others)  # [n, N]; symmetric rule, serves both directions
        to_tuple = rows.cross_entropy(logits, pos, self.label_smoothing)
        to_anchor = rows.cross_entropy(logits_t, pos, self.label_smoothing)
        out[f"loss/{self.anchor}->tuple"], out[f"loss/tuple->{self.anchor}"] = to_tuple.detach(), to_anchor.detach()
        if vol.shape[0]:  # this rank's mean volume of its true tuples (a diagnostic; -> 0 as training aligns)
            out["vol/positive"] = vol.detach().gather(1, rows.target[:, None]).mean()
        out["loss"] = (to_tuple + to_anchor) / 2
        return out
