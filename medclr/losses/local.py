"""Local word-region alignment (GLoRIA's local loss): teach image regions what the report's words say.

A global objective (ConVIRT, Symile, GRAM) only scores pooled vectors, so nothing asks an X-ray's *regions* to
carry the finding a report names; phrase-grounding maps then follow whatever the pooled vector happened to use.
GLoRIA (Huang, Shen, Lungren & Yeung, "GLoRIA: A Multimodal Global-Local Representation Learning Framework for
Label-efficient Medical Image Recognition", ICCV 2021) adds a local term. With word features ``w_i`` (i = 1..L,
the report's real tokens) and region features ``v_j`` (j = 1..M, the image's token grid), all unit vectors in the
joint space (the towers' heads project tokens too)::

    a_ij = softmax_j(tau1 * w_i . v_j)               each word attends over the regions        [L, M]
    c_i  = sum_j a_ij v_j                            the word's region context                  [L, D]
    Z(image, report) = 1/tau2 * log sum_i exp(tau2 * cos(c_i, w_i))   soft maximum over words   scalar

and a bidirectional InfoNCE over the batch on the logits ``tau3 * Z(image_k, report_l)``, exactly as the global
term on pooled cosines. A report matches an image when its words find regions that look like them, so the
gradient reaches the regions a word attends to: the regions of the finding, which is what a phrase-grounding
map reads (:mod:`medclr.eval.grounding_maps`). GLoRIA's temperatures: tau1 = 4, tau2 = 5, tau3 = 10.

Worked example (tau2 -> infinity, one word, one region per image): w = [1, 0]; image 1 has v = [1, 0], image 2
has v = [0, 1]. Then c = v, Z(image 1) = cos = 1 and Z(image 2) = 0, so with tau3 = 10 the report's row of
logits is [10, 0] and its cross-entropy against image 1 is log(1 + e^-10) ~ 4.5e-5.

Within-report contrast (optional, ``ConvirtLoss(local_intra_weight=...)``): GLoRIA contrasts a report's words with
*other images* only, so when two findings share an image (an effusion beside a pneumonia), the word "effusion"
may attend to the pneumonia's regions and still score its own image highest. LoVT (Mueller, Kaissis, Dehghani &
Rueckert, "Joint Learning of Localized Representations from Medical Images and Reports", ECCV 2022) also contrasts
*within* a sample. Here, for each paired report, every real word's region context must be closer to that word
than to the report's other words::

    L_intra = sum_i s_i * CE_i,   CE_i = -log softmax_k(tau3 * cos(c_i, w_k))[i]   (k over the report's words)

with ``s_i = softmax_i(tau2 * cos(c_i, w_i))`` detached: the words GLoRIA's soft maximum already weighs (the
finding words, not "the" or "is") carry the term. Cost ``[B, L, M]`` + ``[B, L, L]``: only the positive pairs.

Cost: all B x B (image, report) pairs attend, ``[B, B, L, M]`` scores and ``[B, B, L, D]`` contexts (B = 32,
L = 128, M = 64, D = 128: 8 M and 17 M floats); the images are processed in chunks to bound the memory.
Under torchrun the term uses each rank's own rows (its negatives are the local batch; the global term still
gathers every rank's rows): gathering token grids would cost B x (L + M) x D per rank and step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from medclr.losses.base import row_cross_entropy

GLORIA_TEMPERATURES = (4.0, 5.0, 10.0)


def word_region_scores(regions: Tensor, words: Tensor, word_mask: Tensor, tau_attn: float = 4.0,
                       tau_words: float = 5.0, chunk: int = 8) -> Tensor:
    """``Z[k, l]``: how well report l's words find themselves in image k's regions (module docstring).

    ``regions [I, M, D]`` and ``words [T, L, D]`` are unit vectors; ``word_mask [T, L]`` is True for real words
    (a report without any real word scores -inf against every image). Returns ``[I, T]``.
    """
    mask = word_mask.bool()
    rows = []
    for start in range(0, regions.shape[0], chunk):
        v = regions[start:start + chunk]  # [i, M, D]
        attn = torch.softmax(tau_attn * torch.einsum("tld,imd->itlm", words, v), dim=-1)  # [i, T, L, M]
        context = F.normalize(torch.einsum("itlm,imd->itld", attn, v), dim=-1)  # [i, T, L, D]
        cos = (context * words.unsqueeze(0)).sum(-1)  # [i, T, L]
        cos = cos.masked_fill(~mask.unsqueeze(0), float("-inf"))
        rows.append(torch.logsumexp(tau_words * cos, dim=-1) / tau_words)  # [i, T]
    return torch.cat(rows)  # [I, T]


def within_report_loss(regions: Tensor, words: Tensor, word_mask: Tensor, tau_attn: float = 4.0,
                       tau_words: float = 5.0, tau_logits: float = 10.0) -> Tensor:
    """``L_intra`` (module docstring) averaged over ``n`` paired rows: ``regions [n, M, D]``, ``words [n, L, D]``
    (unit vectors), ``word_mask [n, L]``. A report with fewer than two real words contributes 0."""
    mask = word_mask.bool()
    attn = torch.softmax(tau_attn * torch.einsum("nld,nmd->nlm", words, regions), dim=-1)  # [n, L, M]
    context = F.normalize(torch.einsum("nlm,nmd->nld", attn, regions), dim=-1)  # [n, L, D]
    logits = tau_logits * torch.einsum("nld,nkd->nlk", context, words)  # [n, L, L]: context i vs word k
    logits = logits.masked_fill(~mask.unsqueeze(1), float("-inf"))
    ce = -torch.log_softmax(logits, dim=-1).diagonal(dim1=1, dim2=2)  # [n, L]
    own = (context * words).sum(-1).detach().masked_fill(~mask, float("-inf"))  # [n, L]
    weight = torch.softmax(tau_words * own, dim=-1).nan_to_num(0.0)  # [n, L]; a row without words: 0
    several = mask.sum(-1, keepdim=True) > 1
    return (weight * ce.masked_fill(~mask, 0.0) * several).sum(-1).mean()


@dataclass(frozen=True)
class LocalAlignment:
    """GLoRIA's local term between an image modality's token grid and a text modality's words."""

    image: str = "cxr"
    text: str = "report"
    temperatures: tuple[float, float, float] = GLORIA_TEMPERATURES  # tau1 (attention), tau2 (words), tau3 (logits)

    def __post_init__(self) -> None:
        if len(self.temperatures) != 3 or min(self.temperatures) <= 0:
            raise ValueError(f"local temperatures must be three positive numbers (tau1, tau2, tau3); "
                             f"got {self.temperatures!r}")
        if self.image == self.text:
            raise ValueError(f"the local term needs two different modalities; got {self.image!r} twice")

    def logits(self, regions: Tensor, words: Tensor, word_mask: Tensor) -> Tensor:
        """``tau3 * Z`` for every (image, report) pair: ``[I, T]``."""
        tau_attn, tau_words, tau_logits = self.temperatures
        return tau_logits * word_region_scores(regions, words, word_mask, tau_attn, tau_words)

    def loss(self, regions: Tensor, words: Tensor, word_mask: Tensor, lam: float = 0.5,
             positives: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(total, image->text, text->image) over ``n`` paired rows; ``positives [n, n]`` marks interchangeable
        rows (identical reports) as in the global term; ``lam`` weights the image->text direction."""
        logits = self.logits(regions.float(), words.float(), word_mask)  # [n, n]
        target = torch.arange(logits.shape[0], device=logits.device)
        # the positives mask is symmetric: one mask serves both directions
        i2t = row_cross_entropy(logits, target, positives).mean()
        t2i = row_cross_entropy(logits.T, target, positives).mean()
        return lam * i2t + (1.0 - lam) * t2i, i2t, t2i

    def intra_loss(self, regions: Tensor, words: Tensor, word_mask: Tensor) -> Tensor:
        """The within-report contrast of the ``n`` paired rows (:func:`within_report_loss`) at this term's
        temperatures."""
        return within_report_loss(regions.float(), words.float(), word_mask, *self.temperatures)
