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
  "rows i and j are interchangeable" for every pair; under a process group pass ``groups`` instead. For exact
  duplicates this leaves the InfoNCE mean and its gradient unchanged (the duplicate's logit in a denominator equals
  the positive's, and the uniform soft target gives back what it takes); it changes DCL (below), whose denominator
  drops every positive, and any rows marked interchangeable that are not bit-identical.
* ``decoupled=True``: DCL (Yeh et al., "Decoupled Contrastive Learning", ECCV 2022), the positive removed from
  the softmax denominator.
* ``hard_negative_beta``: HN-NCE (Radenovic et al., CVPR 2023): each negative weighted by ``exp(beta * logit)``
  (mean weight 1), so the studies a query already confuses with its partner count more; 0 = InfoNCE. See
  :func:`medclr.losses.base.hard_negative_logits`; it combines with ``decoupled`` (DHN-NCE) and with ``groups``
  (positives are never re-weighted).
* ``align_weight`` / ``uniform_weight``: alignment and uniformity terms (Wang & Isola, ICML 2020) added to the
  contrastive loss to close the "contrastive gap" (Fahim et al., 2024); see :mod:`medclr.losses.extras`.
* ``local_weight``: GLoRIA's local word-region term (Huang et al., ICCV 2021) between ``local_pair`` =
  (image, text), added with this weight; the loss then needs the two modalities' token grids
  (``loss(..., tokens={m: EncoderOutput})``, which :class:`medclr.train.parts.ContrastiveStep` passes when
  :attr:`ConvirtLoss.token_modalities` is not empty). See :mod:`medclr.losses.local`.
* ``memory_size`` / ``memory_start`` / ``memory_modalities``: cross-batch memory (XBM; Wang et al., CVPR 2020):
  the last ``memory_size`` rows of each pair's modalities (or only of ``memory_modalities``, e.g. ``[report]``
  for the slow LoRA text tower), kept without gradient, are extra negatives from training call ``memory_start``
  on; a remembered row with the query's ``groups`` id (the same report) is never its negative. See
  :mod:`medclr.losses.memory`.
* ``local_intra_weight``: LoVT's within-report contrast (Mueller et al., ECCV 2022) added with this weight: each
  word's region context must match its own word better than the report's other words
  (:func:`medclr.losses.local.within_report_loss`); needs ``local_weight`` > 0.
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
    hard_negative_logits,
    positive_mask,
    row_mask,
    same_item_mask,
    select_rows,
    zero_loss,
)
from medclr.losses.extras import alignment_rows, uniformity
from medclr.losses.local import GLORIA_TEMPERATURES, LocalAlignment
from medclr.losses.memory import CrossBatchMemory, pad_columns, with_memory
from medclr.types import EncoderOutput

DEFAULT_PAIRS: tuple[tuple[str, str], ...] = (("cxr", "report"), ("ecg", "report"))


@LOSSES.register("convirt")
class ConvirtLoss(MultimodalLoss):
    """lam-weighted bidirectional InfoNCE, mean over ``pairs``; CLIP at ``lam=0.5``. See the module docstring."""

    # cosine logits and GLoRIA's word-region attention are what CLIP and GLoRIA train under AMP; in float32 the
    # local term would cost the demo ~0.3 s of its ~1.1 s bf16 step
    autocast_safe = True

    def __init__(self, pairs: Sequence[tuple[str, str]] = DEFAULT_PAIRS, lam: float = 0.75,
                 decoupled: bool = False, hard_negative_beta: float = 0.0, align_weight: float = 0.0,
                 uniform_weight: float = 0.0,
                 uniform_t: float = 2.0, local_weight: float = 0.0,
                 local_pair: Sequence[str] = ("cxr", "report"),
                 local_temperatures: Sequence[float] = GLORIA_TEMPERATURES, local_intra_weight: float = 0.0,
                 memory_size: int = 0, memory_start: int = 0,
                 memory_modalities: Sequence[str] | None = None) -> None:
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must lie in [0, 1]; got {lam}")
        if not pairs or any(len(p) != 2 or p[0] == p[1] for p in pairs):
            raise ValueError(f"pairs must be a non-empty list of (a, b) with a != b; got {pairs!r}")
        self.pairs = [(str(a), str(b)) for a, b in pairs]
        if hard_negative_beta < 0:
            raise ValueError(f"hard_negative_beta must be >= 0 (0 = InfoNCE); got {hard_negative_beta}")
        self.lam, self.decoupled, self.hard_negative_beta = lam, decoupled, float(hard_negative_beta)
        self.align_weight, self.uniform_weight, self.uniform_t = align_weight, uniform_weight, uniform_t
        if local_weight < 0 or len(local_pair) != 2:
            raise ValueError(f"local_weight must be >= 0 and local_pair an (image, text) pair; "
                             f"got {local_weight}, {local_pair!r}")
        self.local_weight = float(local_weight)
        if local_intra_weight < 0 or (local_intra_weight and not local_weight):
            raise ValueError(f"local_intra_weight must be >= 0 and needs local_weight > 0; got {local_intra_weight} "
                             f"with local_weight {local_weight}")
        self.local_intra_weight = float(local_intra_weight)
        self.local = LocalAlignment(str(local_pair[0]), str(local_pair[1]),
                                    tuple(float(t) for t in local_temperatures))  # type: ignore[arg-type]
        self.memory = CrossBatchMemory(memory_size, memory_start)  # not a module: outside the state dict
        self.memory_modalities = None if memory_modalities is None else tuple(str(m) for m in memory_modalities)

    @property
    def token_modalities(self) -> tuple[str, ...]:
        """Modalities whose token grids the loss needs (the local term's pair), or () without it."""
        return (self.local.image, self.local.text) if self.local_weight else ()

    def extra_repr(self) -> str:
        local = f", local_weight={self.local_weight}, local_pair={self.token_modalities}" if self.local_weight else ""
        local += f", local_intra_weight={self.local_intra_weight}" if self.local_intra_weight else ""
        hard = f", hard_negative_beta={self.hard_negative_beta}" if self.hard_negative_beta else ""
        memory = f", memory_size={self.memory.size}, memory_start={self.memory.start}" if self.memory.size else ""
        memory += f", memory_modalities={list(self.memory_modalities)}" if self.memory_modalities is not None else ""
        return f"pairs={self.pairs}, lam={self.lam}, decoupled={self.decoupled}{hard}{local}{memory}"

    def forward(
        self, emb: Mapping[str, Tensor], logit_scale: Tensor | float, present: Masks | None = None,
        groups: Masks | None = None, positives: Tensor | None = None,
        tokens: Mapping[str, EncoderOutput] | None = None,
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
        if self.training and self.memory.size:
            self.memory.tick()
        if self.local_weight:
            local = self._local(tokens, present, groups, positives, out)
            if local is not None:
                out["loss"] = out["loss"] + local
        return out

    def _local(self, tokens: Mapping[str, EncoderOutput] | None, present: Masks | None, groups: Masks | None,
               positives: Tensor | None, out: dict[str, Tensor]) -> Tensor | None:
        """The weighted local term(s) on this rank's rows that have both modalities (None when no row has them)."""
        a, b = self.token_modalities
        if tokens is None or a not in tokens or b not in tokens:
            raise MedclrInputError(None, f"local_weight > 0 needs the token grids of {a!r} and {b!r}; got "
                                   f"{sorted(tokens or {})}", "pass tokens={modality: model.encode_tokens(...)} "
                                   "(medclr train does), or set local_weight: 0")
        regions, words = tokens[a], tokens[b]
        if regions.tokens is None or words.tokens is None:
            raise MedclrInputError(None, f"the {a!r} or {b!r} tower returns no tokens", "use a tower with a token "
                                   "grid (every medclr X-ray and text tower has one) or set local_weight: 0")
        used = row_mask(present, (a, b), regions.tokens.shape[0], regions.tokens.device).nonzero().squeeze(1)
        out[f"n/local/{a}-{b}"] = torch.tensor(int(used.numel()))
        if not used.numel():
            return None
        word_mask = words.token_mask
        if word_mask is None:
            word_mask = torch.ones(words.tokens.shape[:2], dtype=torch.bool, device=words.tokens.device)
        pos = same_item_mask(used, (a, b), groups, positives)
        total, i2t, t2i = self.local.loss(regions.tokens[used], words.tokens[used], word_mask[used].to(used.device),
                                          self.lam, pos)
        out[f"loss/local/{a}->{b}"], out[f"loss/local/{b}->{a}"] = i2t.detach(), t2i.detach()
        weighted = self.local_weight * total
        if self.local_intra_weight:
            intra = self.local.intra_loss(regions.tokens[used], words.tokens[used], word_mask[used].to(used.device))
            out[f"loss/local/{b}:intra"] = intra.detach()
            weighted = weighted + self.local_intra_weight * intra
        return weighted

    def _pair(self, rows: Rows, a: str, b: str, logit_scale: Tensor | float, positives: Tensor | None,
              out: dict[str, Tensor]) -> Tensor:
        """One pair's lam-weighted loss (plus regularisers); logs its parts into ``out``."""
        xa, xb = rows.local[a], rows.local[b]  # [n, D]
        scale = as_scale(logit_scale, xa)
        extra = None if positives is None else positives.to(xa.device)[rows.local_index][:, rows.local_index]
        pos = positive_mask(rows, (a,), (b,), extra)  # [n, N]; the rule is symmetric, so it serves both ways
        ab = scale * xa @ rows.every[b].T  # [n, N] a_i against every b_j
        ba = ab.T if rows.single else scale * xb @ rows.every[a].T  # [n, N] b_i against every a_j
        if self.training and self.memory.size:  # XBM: [n, N + m] with the remembered rows, which are negatives
            ab, ba = self._remember(rows, a, b, scale, ab, ba)
        l_ab, l_ba = self._direction(rows, ab, pad_columns(pos, ab)), self._direction(rows, ba, pad_columns(pos, ba))
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

    def _remember(self, rows: Rows, a: str, b: str, scale: Tensor, ab: Tensor, ba: Tensor) -> tuple[Tensor, Tensor]:
        """Append the memory's rows of b to ``ab`` and of a to ``ba`` (those of ``memory_modalities``; a query's
        own item excluded by its groups id), then queue this call's rows of all ranks."""
        key = f"{a}-{b}"
        grouped = next((m for m in (b, a) if m in rows.groups_local), None)
        ids, every_ids = (rows.groups_local[grouped], rows.groups_every[grouped]) if grouped else (None, None)
        kept = [m for m in (a, b) if self.memory_modalities is None or m in self.memory_modalities]
        if b in kept:
            ab = with_memory(ab, rows.local[a], scale, self.memory.negatives(f"{key}/{b}", rows.local[a]), ids)
        if a in kept:
            ba = with_memory(ba, rows.local[b], scale, self.memory.negatives(f"{key}/{a}", rows.local[b]), ids)
        for m in kept:
            self.memory.push(f"{key}/{m}", rows.every[m], every_ids)
        return ab, ba

    def _direction(self, rows: Rows, logits: Tensor, positives: Tensor | None) -> Tensor:
        if self.hard_negative_beta:
            logits = hard_negative_logits(logits, rows.target, positives, self.hard_negative_beta)
        if self.decoupled:
            return rows.reduce(decoupled_cross_entropy(logits, rows.target, positives))
        return rows.cross_entropy(logits, positives)
