"""What every medclr loss shares: the registry, one call signature, row selection and cross-entropies.

Signature (the [contract] of ``docs/ARCHITECTURE.md``)::

    out = loss(emb, logit_scale, present=None, groups=None)
    # emb:         {modality: [B, D]} L2-normalised embeddings (rows of absent inputs may hold anything)
    # logit_scale: s = 1 / tau, a scalar tensor (or float)
    # present:     {modality: [B] bool}; a modality without a mask is present in every row
    # groups:      {modality: [B] int}; equal ids mark identical items (e.g. the same report text): see below
    out["loss"]  # scalar; the other keys are logged parts ("loss/<part>", "n/<rows used>")

**Missing modalities.** A term that needs modalities ``(a, b, ...)`` uses the rows where all of them are present
and reports how many it used (``n/<part>``), so no row is dropped silently. Under a process group the rows of
every rank take part (:mod:`medclr.losses.distributed`).

**Identical items (multi-positive targets).** Reports repeat ("No acute cardiopulmonary process."). If rows i and
j have the same report, the report of row j is a correct partner for the X-ray of row i, and treating it as a
negative teaches the model to separate two identical texts. With ``groups``, a score that combines items of rows
i and j is a *positive* when the combination equals a true row: all items taken from row i's side equal row j's
items, or all items taken from row j's side equal row i's (:func:`positive_mask`). The target of a row is then
uniform over its positives (soft-target cross-entropy). Example: texts ``["no acute", "effusion", "no acute"]``
-> ids ``[0, 1, 0]``; the X-ray of row 0 has targets ``[1/2, 0, 1/2]`` over the three reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medclr.errors import MedclrInputError
from medclr.losses import distributed as dist_utils
from medclr.registry import Registry

Masks = Mapping[str, Tensor]


class MultimodalLoss(nn.Module):
    """Base of the registered losses: ``forward(emb, logit_scale, present=None, groups=None) -> dict``.

    ``autocast_safe``: whether training may compute the loss under ``run.amp`` autocast (its matrix products in
    bf16) or must compute it in float32 (the default).
    """

    autocast_safe: bool = False

    def forward(
        self, emb: Mapping[str, Tensor], logit_scale: Tensor | float, present: Masks | None = None,
        groups: Masks | None = None,
    ) -> dict[str, Tensor]:
        raise NotImplementedError(type(self).__name__)


LOSSES: Registry[type[MultimodalLoss]] = Registry("loss")


def compute_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64 (gradient checks); anything else is computed in float32 (fp16 MIPs underflow)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def as_scale(logit_scale: Tensor | float, like: Tensor) -> Tensor:
    """The logit scale as a 0-d tensor on ``like``'s device and dtype (the graph is kept)."""
    if isinstance(logit_scale, Tensor) and logit_scale.ndim == 0 and logit_scale.dtype == like.dtype:
        return logit_scale
    scale = torch.as_tensor(logit_scale, device=like.device)
    if scale.numel() != 1:
        raise MedclrInputError(None, f"logit_scale must be a scalar, got shape {tuple(scale.shape)}")
    return scale.reshape(()).to(like.dtype)


def check_embeddings(emb: Mapping[str, Tensor], needed: Sequence[str]) -> None:
    """All given embeddings are ``[B, D]`` with one B and one D; ``needed`` modalities are there."""
    missing = [m for m in needed if m not in emb]
    if missing:
        raise MedclrInputError(None, f"the loss needs embeddings for {missing}; got {sorted(emb)}",
                               "pass every modality the loss was built for (rows may be marked absent)")
    shapes = {m: tuple(x.shape) for m, x in emb.items()}
    if any(len(s) != 2 for s in shapes.values()) or len({s for s in shapes.values()}) > 1:
        raise MedclrInputError(None, f"embeddings must all be [B, D] with the same B and D; got {shapes}")


def row_mask(present: Masks | None, modalities: Sequence[str], rows: int, device: torch.device) -> Tensor:
    """``[B]`` bool: rows where every one of ``modalities`` is present."""
    mask = torch.ones(rows, dtype=torch.bool, device=device)
    for m in modalities:
        if present is not None and m in present:
            p = present[m].to(device=device, dtype=torch.bool).reshape(-1)
            if p.shape[0] != rows:
                raise MedclrInputError(None, f"present['{m}'] has {p.shape[0]} rows; the embeddings have {rows}")
            mask = mask & p
    return mask


@dataclass
class Rows:
    """The rows a loss term uses, on this rank and on all ranks (one rank: the same tensors).

    ``local[m]``: ``[n, D]`` this rank's usable rows; ``every[m]``: ``[N, D]`` all ranks' usable rows (gathered
    with gradient); ``target``: ``[n]`` position of each local row inside ``every``; ``weight`` = R / N turns a
    sum of local row losses into this rank's share (see :mod:`medclr.losses.distributed`).
    """

    local: dict[str, Tensor]
    every: dict[str, Tensor]
    target: Tensor
    n_global: int
    weight: float
    groups_local: dict[str, Tensor]
    groups_every: dict[str, Tensor]
    local_index: Tensor  # [n] which of the B input rows were used

    @property
    def single(self) -> bool:
        """One process: ``local`` and ``every`` hold the same rows, so ``[n, N]`` score matrices are square."""
        return dist_utils.world_size() == 1

    def reduce(self, row_losses: Tensor) -> Tensor:
        """Sum of this rank's row losses ``[n]`` times R / N: the mean over all rows for one process."""
        return row_losses.sum() * self.weight

    def cross_entropy(self, logits: Tensor, positives: Tensor | None = None, label_smoothing: float = 0.0) -> Tensor:
        """This rank's share of the mean cross-entropy of ``logits: [n, N]`` against the targets (or positives)."""
        if positives is None:
            total = F.cross_entropy(logits, self.target, reduction="sum", label_smoothing=label_smoothing)
            return total * self.weight
        return self.reduce(row_cross_entropy(logits, self.target, positives, label_smoothing))


def select_rows(emb: Mapping[str, Tensor], modalities: Sequence[str], present: Masks | None,
                groups: Masks | None = None) -> Rows:
    """The rows where all ``modalities`` are present, locally and across ranks, cast to the compute dtype."""
    first = emb[modalities[0]]
    masked = present is not None and any(m in present for m in modalities)
    if not dist_utils.is_distributed() and not masked:
        return _all_rows(emb, modalities, groups)
    mask = row_mask(present, modalities, first.shape[0], first.device)  # [B]
    if not dist_utils.is_distributed() and bool(mask.all()):
        return _all_rows(emb, modalities, groups)
    every_mask = dist_utils.gather_no_grad(mask)  # [B_all]
    used = mask.nonzero().squeeze(1)  # [n]
    every_used = every_mask.nonzero().squeeze(1)  # [N]
    local = {m: emb[m].to(compute_dtype(emb[m]))[used] for m in modalities}
    every = {m: dist_utils.gather_with_grad(emb[m].to(compute_dtype(emb[m])))[every_used] for m in modalities}
    offset = dist_utils.rank_offset(first.shape[0], first.device)
    target = every_mask.long().cumsum(0)[offset + used] - 1  # [n] position among the used rows of all ranks
    n_global = int(every_used.numel())
    g_local, g_every = {}, {}
    for m, ids in (groups or {}).items():
        if m in modalities:
            ids = ids.to(first.device).reshape(-1)
            g_local[m], g_every[m] = ids[used], dist_utils.gather_no_grad(ids)[every_used]
    weight = dist_utils.world_size() / n_global if n_global else 0.0
    return Rows(local, every, target, n_global, weight, g_local, g_every, used)


def _all_rows(emb: Mapping[str, Tensor], modalities: Sequence[str], groups: Masks | None) -> Rows:
    """One process, every row usable: no copies, no gathers."""
    x = {m: emb[m].to(compute_dtype(emb[m])) for m in modalities}
    n = x[modalities[0]].shape[0]
    index = torch.arange(n, device=x[modalities[0]].device)
    ids = {m: g.to(index.device).reshape(-1) for m, g in (groups or {}).items() if m in modalities}
    return Rows(x, x, index, n, 1.0 / n if n else 0.0, ids, ids, index)


def positive_mask(rows: Rows, from_row: Sequence[str], from_candidate: Sequence[str],
                  extra: Tensor | None = None) -> Tensor | None:
    """``[n, N]`` bool: score (row i's ``from_row`` items, row j's ``from_candidate`` items) is a true tuple.

    True on the target; True where all ``from_row`` items of i equal row j's, or all ``from_candidate`` items of
    j equal row i's (equality from ``groups``); or where ``extra`` says so. ``None`` when no groups apply.
    """
    if extra is None and not any(m in rows.groups_local for m in (*from_row, *from_candidate)):
        return None
    n, big_n = rows.target.shape[0], rows.n_global
    device = rows.target.device
    pos = torch.zeros(n, big_n, dtype=torch.bool, device=device)
    pos[torch.arange(n, device=device), rows.target] = True
    for side in (from_row, from_candidate):
        if all(m in rows.groups_local for m in side):
            same = torch.ones(n, big_n, dtype=torch.bool, device=device)
            for m in side:
                same &= rows.groups_local[m][:, None] == rows.groups_every[m][None, :]
            pos |= same
    if extra is not None:
        pos |= extra
    return pos


def same_item_mask(used: Tensor, modalities: Sequence[str], groups: Masks | None,
                   positives: Tensor | None = None) -> Tensor | None:
    """``[n, n]`` bool over this rank's ``used`` rows: i and j are interchangeable (the diagonal; rows whose
    ``groups`` id agrees in one of ``modalities``; or ``positives``), or None when nothing but the diagonal is."""
    ids = [g.to(used.device).reshape(-1)[used] for m, g in (groups or {}).items() if m in modalities]
    if not ids and positives is None:
        return None
    pos = torch.eye(used.numel(), dtype=torch.bool, device=used.device)
    for g in ids:
        pos |= g[:, None] == g[None, :]
    if positives is not None:
        pos |= positives.to(used.device)[used][:, used]
    return pos


def row_cross_entropy(logits: Tensor, target: Tensor, positives: Tensor | None = None,
                      label_smoothing: float = 0.0) -> Tensor:
    """Per-row cross-entropy ``[n]``: one-hot ``target`` or, with ``positives`` ``[n, C]``, uniform over them."""
    if positives is None:
        return F.cross_entropy(logits, target, reduction="none", label_smoothing=label_smoothing)
    soft = positives.to(logits.dtype)
    soft = soft / soft.sum(dim=1, keepdim=True)  # [n, C] rows sum to 1
    return F.cross_entropy(logits, soft, reduction="none", label_smoothing=label_smoothing)


def target_mask(logits: Tensor, target: Tensor) -> Tensor:
    """``[n, C]`` bool, True at each row's ``target`` column: the positives when no multi-positive mask is given."""
    mask = torch.zeros_like(logits, dtype=torch.bool)
    mask[torch.arange(logits.shape[0], device=logits.device), target] = True
    return mask


def decoupled_cross_entropy(logits: Tensor, target: Tensor, positives: Tensor | None = None) -> Tensor:
    """Decoupled contrastive loss per row (Yeh et al., ECCV 2022): the positive leaves the denominator.

    ``l_i = -mean_{p in pos(i)} z_ip + logsumexp_{j not in pos(i)} z_ij``. InfoNCE's denominator contains the
    positive, which couples the gradients of positive and negatives (the "NPC" factor) and makes small batches
    learn slowly; removing it gives the DCL objective. Rows without any negative contribute 0.
    """
    pos = target_mask(logits, target) if positives is None else positives
    positive = (logits * pos).sum(1) / pos.sum(1)  # [n] mean positive logit
    negative = torch.logsumexp(logits.masked_fill(pos, float("-inf")), dim=1)  # [n]; -inf when no negative
    has_negative = (~pos).any(1)
    return torch.where(has_negative, negative - positive, torch.zeros_like(positive))


def hard_negative_logits(logits: Tensor, target: Tensor, positives: Tensor | None, beta: float) -> Tensor:
    """Logits whose cross-entropy is HN-NCE (Radenovic et al., "Filtering, Distillation, and Hard Negatives for
    Vision-Language Pre-Training", CVPR 2023): each negative's term in the softmax denominator is weighted by

        w_ij = M_i exp(beta z_ij) / sum_{k in neg(i)} exp(beta z_ik)        (mean weight 1 over row i's M_i negatives)

    so negatives the model already scores close to the positive count more (beta = 0: InfoNCE). The weight enters
    as ``z_ij + log w_ij`` on the negatives; positives (the target, or ``positives [n, C]``) keep their logits.
    The weights are importance weights computed from detached logits (the gradient flows through ``z`` only).

    Worked example: row logits [2, 1, 0], target 0, beta 1: w = 2 softmax([1, 0]) = [1.462, 0.538], so the loss is
    -2 + log(e^2 + 1.462 e + 0.538) = 0.477 against InfoNCE's -2 + log(e^2 + e + 1) = 0.408.
    """
    pos = target_mask(logits, target) if positives is None else positives
    neg = ~pos
    scaled = (beta * logits.detach()).masked_fill(pos, float("-inf"))  # [n, C]
    n_neg = neg.sum(dim=1, keepdim=True).clamp(min=1).to(logits.dtype)  # [n, 1]
    log_w = torch.log(n_neg) + scaled - torch.logsumexp(scaled, dim=1, keepdim=True)  # [n, C]; only read on negatives
    return torch.where(neg, logits + log_w, logits)


def zero_loss(emb: Mapping[str, Tensor]) -> Tensor:
    """A 0 that keeps every embedding in the graph (so backward and DDP see all parameters)."""
    values = list(emb.values())
    total = sum((x.sum() for x in values[1:]), start=values[0].sum()) if values else torch.zeros(())
    return total * 0.0
