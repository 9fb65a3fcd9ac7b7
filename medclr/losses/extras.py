"""Regularisers that refine the contrastive objectives (each an option with its paper).

Alignment and uniformity (Wang & Isola, "Understanding Contrastive Representation Learning through Alignment
and Uniformity on the Hypersphere", ICML 2020)::

    align(a, b)  = mean_i ||a_i - b_i||^alpha                         (alpha = 2: 2 - 2 cos for unit vectors)
    uniform(x)   = log mean_{i != j} exp(-t ||x_i - x_j||^2)          (t = 2)

Alignment pulls partners together; uniformity spreads a modality over the sphere. Added to CLIP's loss they
close the "contrastive gap" between image and text clouds (Fahim, Murphy & Fyshe, "It's Not a Modality Gap",
2024). Worked example: x = [[1, 0], [-1, 0]] has one distance^2 of 4, so uniform(x) = -2 * 4 = -8 (the minimum
for two points); x = [[1, 0], [1, 0]] gives 0 (the maximum: collapse).

STRUCTURE-style neighbourhood preservation (after Gröger, Wen, Le & Brbić, "With Limited Data for Multimodal
Alignment, Let the STRUCTURE Guide You", 2025). With little paired data, aligning a pretrained unimodal encoder
(a report LLM, say) can wreck the neighbourhoods it already knows. STRUCTURE regularises the aligned space to
keep the pretrained space's neighbourhood geometry at several scales. **Our version**
(:func:`structure_loss`; not the authors' code):

1. neighbourhood distributions ``P = softmax_j(cos(f_i, f_j) / tau)`` over the batch from the frozen pretrained
   features f (diagonal excluded; a constant), and ``Q`` the same from the aligned embeddings z;
2. scales: the l-step random-walk transitions ``P^l`` and ``Q^l`` for l = 1..levels (l = 1: nearest
   neighbours; larger l: neighbours of neighbours, i.e. cluster structure);
3. loss = mean over levels and rows of the Jensen-Shannon divergence JS(P^l_i || Q^l_i), which is bounded
   (<= log 2) and symmetric, so a few outlier rows cannot dominate.

It is 0 when z has the same cosine-similarity matrix as f (z a rotation of f, say; the dimensions may differ)
and grows as z's neighbourhoods drift from f's. Add it per modality:
``loss = out["loss"] + w * structure_loss(f_cxr, z_cxr)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def alignment_rows(a: Tensor, b: Tensor, alpha: float = 2.0) -> Tensor:
    """``[n]`` per-row ``||a_i - b_i||^alpha`` (Wang & Isola, 2020)."""
    return (a - b).pow(2).sum(dim=-1).clamp_min(0).pow(alpha / 2)


def alignment(a: Tensor, b: Tensor, alpha: float = 2.0) -> Tensor:
    """Mean alignment ``mean_i ||a_i - b_i||^alpha`` of paired rows ``a, b: [n, D]``."""
    return alignment_rows(a, b, alpha).mean()


def sq_distances(x: Tensor) -> Tensor:
    """``[n, n]`` squared Euclidean distances from the Gram matrix (a smooth gradient at distance 0)."""
    sq = x.pow(2).sum(dim=-1)  # [n]
    return (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0)


def uniformity(x: Tensor, t: float = 2.0) -> Tensor:
    """``log mean_{i != j} exp(-t ||x_i - x_j||^2)`` over rows of ``x: [n, D]``; 0 for n < 2."""
    n = x.shape[0]
    if n < 2:
        return x.sum() * 0.0
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=x.device)
    z = (-t * sq_distances(x))[off_diagonal]  # [n (n - 1)]
    return torch.logsumexp(z, dim=0) - math.log(n * (n - 1))


def neighbourhood(x: Tensor, temperature: float) -> Tensor:
    """``[n, n]`` row-stochastic softmax over cosine similarities / temperature, self excluded."""
    unit = F.normalize(x, dim=-1)
    logits = unit @ unit.T / temperature
    eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    return torch.softmax(logits.masked_fill(eye, float("-inf")), dim=-1)


def js_divergence_rows(p: Tensor, q: Tensor) -> Tensor:
    """``[n]`` Jensen-Shannon divergence (nats) between the rows of two row-stochastic matrices."""
    m = 0.5 * (p + q)
    log_m = torch.where(m > 0, m, torch.ones_like(m)).log()  # 0 log 0 = 0, with finite gradients (no xlogy NaN)
    return 0.5 * (_plogp_over(p, log_m) + _plogp_over(q, log_m)).sum(dim=-1)


def _plogp_over(p: Tensor, log_m: Tensor) -> Tensor:
    """Elementwise ``p * (log p - log m)``, 0 where p = 0."""
    positive = p > 0
    log_p = torch.where(positive, p, torch.ones_like(p)).log()
    return torch.where(positive, p * (log_p - log_m), torch.zeros_like(p))


def structure_loss(reference: Tensor, aligned: Tensor, temperature: float = 0.1, levels: int = 2) -> Tensor:
    """Multi-scale neighbourhood preservation of ``reference: [n, F]`` (frozen) in ``aligned: [n, D]``.

    See the module docstring. ``reference`` is detached: only the aligned side is trained.
    """
    if reference.shape[0] != aligned.shape[0]:
        raise ValueError(f"reference has {reference.shape[0]} rows, aligned {aligned.shape[0]}")
    if levels < 1:
        raise ValueError(f"levels must be >= 1; got {levels}")
    if aligned.shape[0] < 3:
        return aligned.sum() * 0.0
    dtype = torch.float64 if aligned.dtype == torch.float64 else torch.float32
    p = neighbourhood(reference.detach().to(dtype), temperature)  # [n, n]
    q = neighbourhood(aligned.to(dtype), temperature)  # [n, n]
    p_l, q_l, total = p, q, aligned.new_zeros((), dtype=dtype)
    for level in range(levels):
        if level:
            p_l, q_l = p_l @ p, q_l @ q  # l-step random walks
        total = total + js_divergence_rows(p_l, q_l).mean()
    return total / levels
