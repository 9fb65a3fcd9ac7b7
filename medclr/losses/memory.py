"""Cross-batch memory: the embeddings of the last few batches as extra negatives (XBM).

A contrastive loss only sees the negatives in its batch. On a CPU or a small GPU the batch is small (the demo's
is 32), so a report meets few X-rays that differ from its own in a detail only (the side of an effusion, its
size): the loss rarely asks the towers for those details. Wang, Zhang, Huang & Scott ("Cross-Batch Memory for
Embedding Learning", CVPR 2020) observed that embeddings drift slowly once the first phase of training is over,
so the embeddings of past batches, kept without gradient in a first-in-first-out queue, serve as negatives
almost as well as fresh ones, for the cost of one more matrix product. MoCo (He et al., CVPR 2020) keeps such a
queue with a momentum encoder; XBM needs none, which suits a LoRA text tower that barely moves.

For a pair (a, b), a query row ``a_i`` is scored against this batch's ``b_j`` and the memory's ``b'_k``::

    logits_i = s * [a_i . b_1, ..., a_i . b_N, a_i . b'_1, ..., a_i . b'_M]

with the target among the first N columns, and the same with a and b swapped. Memory rows never carry a gradient
and are never positives: a memory row that is the query's own item again (equal ``groups`` id, e.g. the same
report text seen a few batches ago) is removed from the query's negatives (its logit is set to
:data:`EXCLUDED`), so an item is never pushed away from its own past embedding.

The memory fills from the first training call and its rows are used from call ``start`` on (XBM's warm-up: the
first steps' embeddings move too fast to be negatives). It lives only in training mode, is not part of the
state dict (a resumed run refills it within ``size / batch`` steps, its warm-up clock restarting) and starts
afresh, warm-up included, when the embedding width changes. Under a process group every rank enqueues the
gathered rows, so all ranks hold the same memory.

Caution, measured: XBM's metric-learning setting has class labels that tell which remembered rows are false
negatives; self-supervised, only identical items are known. Where many studies share a report's meaning (the
demo world: 29 % of its training report pairs share every X-ray label, in different words), the memory multiplies
the false negatives (~75 per query at 256 rows against ~9 in a batch of 32), and the demo recipe lost retrieval
and its grounding maps with it (benchmarks/RUN_LOG.md, "Cross-batch memory").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

EXCLUDED = -1.0e4
"""Logit given to memory rows that are a query's own item: exp(-1e4) is 0 in float32, and unlike -inf it keeps
soft-target cross-entropies finite (0 * -inf is NaN)."""


class CrossBatchMemory:
    """FIFO queues of past embeddings, one per key (a pair's modality: ``"cxr-report/report"``), with the
    ``groups`` ids of their rows where the loss had them.

    ``size``: rows kept per queue (0 disables the memory); ``start``: training calls before its rows are used.
    """

    def __init__(self, size: int, start: int = 0) -> None:
        if size < 0 or start < 0:
            raise ValueError(f"memory_size and memory_start must be >= 0; got {size}, {start}")
        self.size, self.start = int(size), int(start)
        self.calls = 0
        self._emb: dict[str, Tensor] = {}  # key -> [m, D], newest rows last
        self._ids: dict[str, Tensor] = {}  # key -> [m] int64 groups ids of those rows
        self._known: dict[str, Tensor] = {}  # key -> [m] bool: the row had an id

    def __len__(self) -> int:
        return min((x.shape[0] for x in self._emb.values()), default=0)

    @property
    def active(self) -> bool:
        """Whether the memory's rows take part in the loss now (enabled and past the warm-up)."""
        return self.size > 0 and self.calls >= self.start

    def negatives(self, key: str, like: Tensor) -> Remembered | None:
        """The remembered rows of ``key`` on ``like``'s device and dtype, or None (inactive, empty, or remembered
        at another width)."""
        emb = self._emb.get(key)
        if not self.active or emb is None or not emb.shape[0] or emb.shape[1] != like.shape[1]:
            return None
        return Remembered(emb.to(device=like.device, dtype=like.dtype), self._ids[key].to(like.device),
                          self._known[key].to(like.device))

    def push(self, key: str, rows: Tensor, ids: Tensor | None) -> None:
        """Append ``rows: [N, D]`` (detached) with their ids (``[N]`` or None) and drop the oldest beyond ``size``;
        a new width restarts the queue."""
        if not self.size:
            return
        rows = rows.detach()
        known = torch.full((rows.shape[0],), ids is not None, dtype=torch.bool, device=rows.device)
        ids = torch.zeros(rows.shape[0], dtype=torch.long, device=rows.device) if ids is None \
            else ids.detach().to(rows.device, torch.long).reshape(-1)
        old = self._emb.get(key)
        if old is not None and old.shape[1] != rows.shape[1]:  # another model (or a probe call): start afresh
            self.reset()
            old = None
        if old is None:
            old, old_ids, old_known = rows[:0], ids[:0], known[:0]
        else:
            old = old.to(rows.device, rows.dtype)
            old_ids, old_known = self._ids[key].to(rows.device), self._known[key].to(rows.device)
        self._emb[key] = torch.cat([old, rows])[-self.size:]
        self._ids[key] = torch.cat([old_ids, ids])[-self.size:]
        self._known[key] = torch.cat([old_known, known])[-self.size:]

    def tick(self) -> None:
        """Count one training call (the warm-up clock)."""
        self.calls += 1

    def reset(self) -> None:
        """Forget every row and restart the warm-up clock."""
        for queues in (self._emb, self._ids, self._known):
            queues.clear()
        self.calls = 0


@dataclass(frozen=True)
class Remembered:
    """One queue's rows: ``emb [m, D]`` (no gradient), ``ids [m]`` and ``known [m]`` (the row had an id)."""

    emb: Tensor
    ids: Tensor
    known: Tensor


def with_memory(logits: Tensor, query: Tensor, scale: Tensor, memory: Remembered | None,
                query_ids: Tensor | None) -> Tensor:
    """``[n, N + m]``: ``logits: [n, N]`` followed by ``scale * query @ memory.emb.T``, where memory rows with the
    query row's id (``query_ids: [n]``) are set to :data:`EXCLUDED`. No memory: ``logits`` itself."""
    if memory is None:
        return logits
    extra = scale * query @ memory.emb.T  # [n, m]; the rows carry no gradient
    if query_ids is not None:
        same = (query_ids.reshape(-1, 1) == memory.ids.reshape(1, -1)) & memory.known.reshape(1, -1)  # [n, m]
        extra = extra.masked_fill(same, EXCLUDED)
    return torch.cat([logits, extra], dim=1)


def pad_columns(mask: Tensor | None, logits: Tensor) -> Tensor | None:
    """A ``[n, N]`` positives mask padded with False to ``logits``' ``[n, N + m]`` (remembered rows are never
    positives); None stays None."""
    if mask is None or mask.shape[1] == logits.shape[1]:
        return mask
    return torch.cat([mask, mask.new_zeros(mask.shape[0], logits.shape[1] - mask.shape[1])], dim=1)
