"""Contrastive objectives for X-ray, ECG and report embeddings, registered by name in ``LOSSES``.

>>> import torch
>>> from medclr.losses import LOSSES, ConvirtLoss
>>> LOSSES.names()
['convirt', 'gram', 'symile']
>>> emb = {"cxr": torch.eye(2), "report": torch.eye(2)}
>>> out = ConvirtLoss(pairs=[("cxr", "report")], lam=0.5)(emb, torch.tensor(10.0))
>>> round(out["loss"].item(), 5), int(out["n/cxr-report"])
(5e-05, 2)

* :class:`ConvirtLoss` (``"convirt"``): lam-weighted bidirectional InfoNCE per pair; CLIP at lam = 0.5.
* :class:`SymileLoss` (``"symile"``): multilinear inner product over all modalities; ``n`` / ``n_squared``.
* :class:`GramLoss` (``"gram"``): negative Gram volume of (anchor, other modalities).
* :mod:`~medclr.losses.extras`: alignment, uniformity and a STRUCTURE-style neighbourhood regulariser.
* :mod:`~medclr.losses.scoring`: the inference score matching each loss, ``score_fn(name)``.
* :mod:`~medclr.losses.distributed`: global-batch negatives across ranks with gradients.

All losses: ``loss(emb, logit_scale, present=None, groups=None) -> {"loss": scalar, "loss/<part>": ..., "n/...": ...}``.
"""

from __future__ import annotations

from medclr.losses.base import LOSSES, MultimodalLoss
from medclr.losses.distributed import gather_with_grad
from medclr.losses.extras import alignment, structure_loss, uniformity
from medclr.losses.gram import GramLoss, gram_volumes
from medclr.losses.pairwise import ConvirtLoss
from medclr.losses.scoring import SCORES, cosine_scores, gram_scores, mip_scores, score_fn
from medclr.losses.symile import SymileLoss, recommended_logit_scale

__all__ = [
    "LOSSES",
    "SCORES",
    "ConvirtLoss",
    "GramLoss",
    "MultimodalLoss",
    "SymileLoss",
    "alignment",
    "cosine_scores",
    "gather_with_grad",
    "gram_scores",
    "gram_volumes",
    "mip_scores",
    "recommended_logit_scale",
    "score_fn",
    "structure_loss",
    "uniformity",
]
