"""Geometry of the shared space: modality gap, alignment, uniformity and effective rank.

For unit embeddings ``x`` (rows of one modality) and paired rows ``(a_i, b_i)`` of two modalities:

* **modality gap** (Liang et al., NeurIPS 2022): ``||mean_i a_i - mean_i b_i||``, the distance between the two
  modalities' centroids; contrastive models keep the modalities in separate cones, so it is rarely 0.
* **alignment** (Wang & Isola, ICML 2020): ``mean_i ||a_i - b_i||^2`` (0 = partners coincide; 4 = antipodal).
* **uniformity** (same paper): ``log mean_{i != j} exp(-2 ||x_i - x_j||^2)``; lower = more evenly spread on the
  sphere (about -4 for uniform points in high dimension; 0 = collapsed onto one point).
* **effective rank** (Roy & Vetterli, 2007): ``exp(H(p))`` with ``p_k = sigma_k / sum sigma`` the normalised
  singular values of the centred embedding matrix; 1 = collapsed onto a line, D = every direction used.

Keys: ``gap/<a>-<b>``, ``alignment/<a>-<b>``, ``uniformity/<m>``, ``effective_rank/<m>``, ``n/<m>``.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from medclr.eval.embeddings import Embeddings
from medclr.losses.extras import alignment, uniformity

MAX_UNIFORMITY_ROWS = 4096  # uniformity is O(n^2): a fixed random subset of rows beyond this


def effective_rank(x: np.ndarray) -> float:
    """``exp(entropy of the normalised singular values)`` of the centred ``x [n, D]``."""
    if len(x) < 2:
        return float("nan")
    sigma = np.linalg.svd(x - x.mean(0), compute_uv=False)
    if sigma.sum() <= 0:
        return 1.0
    p = sigma / sigma.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def diagnostics(emb: Embeddings, seed: int = 0) -> dict[str, float]:
    """Every metric of the module docstring for the modalities of ``emb``."""
    out: dict[str, float] = {}
    rng = np.random.default_rng(seed)
    for m, x in emb.vectors.items():
        rows = x[emb.present[m]]
        out[f"n/{m}"] = float(len(rows))
        if len(rows) < 2:
            continue
        sample = rows if len(rows) <= MAX_UNIFORMITY_ROWS else rows[rng.choice(len(rows), MAX_UNIFORMITY_ROWS, False)]
        out[f"uniformity/{m}"] = float(uniformity(torch.from_numpy(sample)))
        out[f"effective_rank/{m}"] = effective_rank(rows)
    for a, b in itertools.combinations(emb.vectors, 2):
        both = emb.present[a] & emb.present[b]
        if not both.any():
            continue
        xa, xb = emb.vectors[a][both], emb.vectors[b][both]
        out[f"gap/{a}-{b}"] = float(np.linalg.norm(xa.mean(0) - xb.mean(0)))
        out[f"alignment/{a}-{b}"] = float(alignment(torch.from_numpy(xa), torch.from_numpy(xb)))
    return out
