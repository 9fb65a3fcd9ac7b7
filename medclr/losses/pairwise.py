"""ConVIRT / CLIP: bidirectional InfoNCE between pairs of modalities.

For a pair (a, b) with N rows of unit vectors and logit scale s (= 1 / tau)::

    L(a, b) = lam * CE(s * a @ b.T, arange(N)) + (1 - lam) * CE(s * b @ a.T, arange(N))

and the loss is the mean of L over the pairs that have rows. ConVIRT (Zhang et al., "Contrastive Learning of
Medical Visual Representations from Paired Images and Text", MLHC 2022; arXiv 2020) weights the image->text
direction by lam = 0.75; lam = 0.5 with a learned s is CLIP (Radford et al., ICML 2021).

Worked example (N = 2, s = 10): a = [[1, 0], [0, 1]], b = [[0.8, 0.6], [0.6, 0.8]] gives
s * a @ b.T = [[8, 6], [6, 8]], so each row's cross-entropy is log(1 + e^-2) = 0.127 in both directions and
L = 0.127 for any lam. Swap b's rows and every row loss becomes log(1 + e^2) = 2.127.

Options:

* ``groups`` / ``positives``: identical items (repeated report texts) are positives, not negatives, of each other
  (multi-positive soft targets; see :mod:`medclr.losses.base`). ``positives`` is a symmetric ``[B, B]`` bool mask
  "rows i and j are interchangeable" for every pair; under a process group pass ``groups`` instead.
* ``decoupled=True``: DCL (Yeh et al., "Decoupled Contrastive Learning", ECCV 2022), the positive removed from
  the softmax denominator.
* ``align_weight`` / ``uniform_weight``: alignment and uniformity terms (Wang & Isola, ICML 2020) added to the
  contrastive loss to close the "contrastive gap" (Fahim et al., 2024); see :mod:`medclr.losses.extras`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from medclr.errors import MedclrInputError
from medclr.losses import distributed as dist_utils
from medclr.losses.base import (
    LOSSES,
    Masks,
    MultimodalLoss,
    Rows,
    as_scale,
    check_embeddings,
    decoupled_cross_entropy,
    positive_mask,
    select_rows,
    zero_loss,
)
from medclr.losses.extras import alignment_rows, uniformity

DEFAULT_PAIRS: tuple[tuple[str, str], ...] = (("cxr", "report"), ("ecg", "report"))


@LOSSES.register("convirt")
class ConvirtLoss(MultimodalLoss):
    """lam-weighted bidirectional InfoNCE, mean over ``pairs``; CLIP at ``lam=0.5``. See the module docstring."""

    def __init__(self, pairs: Sequence[tuple[str, str]] = DEFAULT_PAIRS, lam: float = 0.75,
                 decoupled: bool = False, align_weight: float = 0.0, uniform_weight: float = 0.0,
                 uniform_t: float = 2.0) -> None:
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must lie in [0, 1]; got {lam}")
        if not pairs or any(len(p) != 2 or p[0] == p[1] for p in pairs):
            raise ValueError(f"pairs must be a non-empty list of (a, b) with a != b; got {pairs!r}")
        self.pairs = [(str(a), str(b)) for a, b in pairs]
        self.lam, self.decoupled = lam, decoupled
        self.align_weight, self.uniform_weight, self.uniform_t = align_weight, uniform_weight, uniform_t

    def extra_repr(self) -> str:
        return f"pairs={self.pairs}, lam={self.lam}, decoupled={self.decoupled}"

    def forward(
        self, emb: Mapping[str, Tensor], logit_scale: Tensor | float, present: Masks | None = None,
        groups: Masks | None = None, positives: Tensor | None = None,
    ) -> dict[str, Tensor]:
        check_embeddings(emb, [])
        if positives is not None and dist_utils.is_distributed():
            raise MedclrInputError(None, "a [B, B] positives mask cannot span ranks",
                                   "pass groups={modality: ids} instead; they are gathered across ranks")
        out: dict[str, Tensor] = {}
        terms: list[Tensor] = []
        for a, b in self.pairs:
            name = f"{a}-{b}"
            if a not in emb or b not in emb:
                out[f"n/{name}"] = torch.tensor(0)
                continue
            rows = select_rows(emb, (a, b), present, groups)
            out[f"n/{name}"] = torch.tensor(rows.n_global)
            if rows.n_global:
                terms.append(self._pair(rows, a, b, logit_scale, positives, out))
        out["loss"] = (terms[0] if len(terms) == 1 else torch.stack(terms).mean()) if terms else zero_loss(emb)
        return out

    def _pair(self, rows: Rows, a: str, b: str, logit_scale: Tensor | float, positives: Tensor | None,
              out: dict[str, Tensor]) -> Tensor:
        """One pair's lam-weighted loss (plus regularisers); logs its parts into ``out``."""
        xa, xb = rows.local[a], rows.local[b]  # [n, D]
        scale = as_scale(logit_scale, xa)
        extra = None if positives is None else positives.to(xa.device)[rows.local_index][:, rows.local_index]
        pos = positive_mask(rows, (a,), (b,), extra)  # [n, N]; the rule is symmetric, so it serves both ways
        ab = scale * xa @ rows.every[b].T  # [n, N] a_i against every b_j
        ba = ab.T if rows.single else scale * xb @ rows.every[a].T  # [n, N] b_i against every a_j
        l_ab, l_ba = self._direction(rows, ab, pos), self._direction(rows, ba, pos)
        out[f"loss/{a}->{b}"], out[f"loss/{b}->{a}"] = l_ab.detach(), l_ba.detach()
        total = self.lam * l_ab + (1.0 - self.lam) * l_ba
        if self.align_weight:
            align = rows.reduce(alignment_rows(xa, xb))
            out[f"reg/align/{a}-{b}"] = align.detach()
            total = total + self.align_weight * align
        if self.uniform_weight:
            unif = 0.5 * (uniformity(rows.every[a], self.uniform_t) + uniformity(rows.every[b], self.uniform_t))
            out[f"reg/uniform/{a}-{b}"] = unif.detach()
            total = total + self.uniform_weight * unif
        out[f"loss/{a}-{b}"] = total.detach()
        return total

    def _direction(self, rows: Rows, logits: Tensor, positives: Tensor | None) -> Tensor:
        if self.decoupled:
            return rows.reduce(decoupled_cross_entropy(logits, rows.target, positives))
        return rows.cross_entropy(logits, positives)
