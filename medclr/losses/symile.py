"""Symile: contrastive learning of k >= 2 modalities with the multilinear inner product.

Saporta, Puli, Goldstein & Ranganath, "Contrasting with Symile: Simple Model-Agnostic Representation Learning
for Unlimited Modalities", NeurIPS 2024. Pairwise CLIP only sees pairwise information; Symile scores a whole
tuple with ``MIP(x, y, z) = sum_d x[d] y[d] z[d]`` and lower-bounds the total correlation of all modalities, so
(for example) an X-ray and an ECG *together* can retrieve the report they jointly imply.

Each modality in turn is the anchor. For anchor row i the candidates are tuples of the other modalities::

    logit(i, t) = s * MIP(x_i, tuple_t),   loss_anchor = mean_i CE(logits_i, true tuple of row i)
    loss = mean over anchors

* ``negatives="n_squared"``: all N^(k-1) tuples (j_1, ..., j_{k-1}); the true tuple is (i, ..., i). Computed by
  :func:`medclr.losses.mip.mip_logsumexp` in chunks (B = 1024, k = 3 never holds a [B, B, B] tensor).
* ``negatives="n"``: N tuples; candidate j = (o_1[p_1[j]], ..., o_{k-1}[p_{k-1}[j]]) with an independent random
  permutation p_m per non-anchor modality, and the true tuple put back in column i (Symile's O(N) sampler).
  Permutations are drawn per anchor (modalities in order), then per non-anchor modality in order, with
  ``torch.randperm(N, generator=...)``: with the global generator this is the order of the reference code.

Worked example (k = 3, N = 2, D = 2, s = 1): x = y = z = [[1, 0], [0, 1]]. ``n_squared`` candidates of anchor
row 0 are (y0 z0, y0 z1, y1 z0, y1 z1) = ((1,0), (0,0), (0,0), (0,1)) with MIPs (1, 0, 0, 0) against x0, so the
row loss is -log(e / (e + 3)) = 0.744. With two modalities Symile is CLIP with lam = 0.5.

**Pitfall: the logit scale.** The MIP of k independent unit vectors in d dimensions has spread about
``d^((1-k)/2)`` (0.088 for k = 2, d = 128; 0.0078 for k = 3), so CLIP's s ~ 14 leaves 3-modality Symile logits
near 0 and almost no gradient. Start s near ``d^((k-1)/2)`` (= d for k = 3) and cap it around 1000:
:func:`recommended_logit_scale` (configs: ``logit_scale: {init: 128, max: 1000}`` for d = 128).

Missing modalities: Symile uses complete rows only (``n/complete`` reports how many); the paper's missingness
indicators are not implemented here. ``groups`` (identical items) are not supported by Symile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from medclr.errors import MedclrInputError
from medclr.losses import distributed as dist_utils
from medclr.losses.base import LOSSES, Masks, MultimodalLoss, Rows, as_scale, check_embeddings, select_rows, zero_loss
from medclr.losses.mip import DEFAULT_CHUNK_ELEMENTS, mip, mip_logsumexp, shuffled_logits

SYMILE_MAX_LOGIT_SCALE = 1000.0


def recommended_logit_scale(dim: int, k: int) -> tuple[float, float]:
    """``(init, max)`` for the learnable logit scale of a k-modality MIP loss in ``dim`` dimensions.

    init = dim^((k-1)/2) makes the typical logit spread ~1 (the MIP spread is dim^((1-k)/2)); max =
    max(1000, 2 * init). k = 3, d = 128 -> (128.0, 1000.0); k = 2, d = 256 -> (16.0, 1000.0).
    """
    if dim < 1 or k < 2:
        raise ValueError(f"need dim >= 1 and k >= 2; got dim={dim}, k={k}")
    init = float(dim) ** ((k - 1) / 2)
    return init, max(SYMILE_MAX_LOGIT_SCALE, 2.0 * init)


@LOSSES.register("symile")
class SymileLoss(MultimodalLoss):
    """Symile over the modalities (keys) of ``emb``; see the module docstring."""

    def __init__(self, negatives: Literal["n", "n_squared"] = "n", seed: int | None = None,
                 generator: torch.Generator | None = None, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> None:
        super().__init__()
        if negatives not in ("n", "n_squared"):
            raise ValueError(f"negatives must be 'n' or 'n_squared'; got {negatives!r}")
        self.negatives = negatives
        self.generator = generator if generator is not None or seed is None else torch.Generator().manual_seed(seed)
        self.chunk_elements = chunk_elements

    def extra_repr(self) -> str:
        return f"negatives={self.negatives!r}"

    def forward(
        self, emb: Mapping[str, Tensor], logit_scale: Tensor | float, present: Masks | None = None,
        groups: Masks | None = None,
    ) -> dict[str, Tensor]:
        check_embeddings(emb, [])
        if groups:
            raise MedclrInputError(None, "SymileLoss does not support groups (identical items)",
                                   "use ConvirtLoss or GramLoss for multi-positive targets")
        modalities = list(emb)
        if len(modalities) < 2:
            raise MedclrInputError(None, f"Symile needs at least two modalities; got {modalities}")
        rows = select_rows(emb, modalities, present)
        out = {"n/complete": torch.tensor(rows.n_global)}
        if rows.n_global == 0:
            out["loss"] = zero_loss(emb)
            return out
        scale = as_scale(logit_scale, rows.local[modalities[0]])
        perms = self.permutations(len(modalities), rows.n_global, scale.device) if self.negatives == "n" else None
        terms = []
        for a, anchor in enumerate(modalities):
            term = rows.reduce(self._anchor_rows(rows, modalities, anchor, scale, None if perms is None else perms[a]))
            out[f"loss/{anchor}"] = term.detach()
            terms.append(term)
        out["loss"] = torch.stack(terms).mean()
        return out

    def permutations(self, k: int, n_rows: int, device: torch.device) -> Tensor:
        """``[k, k-1, N]``: for each anchor, one permutation per non-anchor modality (rank 0's on every rank)."""
        perms = torch.stack([
            torch.stack([torch.randperm(n_rows, generator=self.generator) for _ in range(k - 1)]) for _ in range(k)
        ])
        return dist_utils.broadcast_from_rank0(perms.to(device))

    def _anchor_rows(self, rows: Rows, modalities: list[str], anchor: str, scale: Tensor,
                     perms: Tensor | None) -> Tensor:
        """``[n]`` cross-entropy of each local row of ``anchor`` against its candidate tuples."""
        rest = [m for m in modalities if m != anchor]
        x = rows.local[anchor]  # [n, D]
        positive = mip([x, *(rows.local[m] for m in rest)])  # [n] MIP of the true tuples
        others = [rows.every[m] for m in rest]  # k-1 x [N, D]
        if perms is None:
            return mip_logsumexp(scale, x, others, self.chunk_elements) - scale * positive
        logits = shuffled_logits(scale, x, others, list(perms), rows.target, positive)  # [n, N]
        return F.cross_entropy(logits, rows.target, reduction="none")
