"""Token pooling for text towers, correct for left *and* right padding.

Given hidden states ``h [B, L, D]`` and an attention mask ``m [B, L]`` (1 = real token):

* ``cls`` - the first real token (BERT's [CLS]): position ``argmax_l m[b, l]`` (the first 1).
* ``mean`` - the masked mean ``sum_l m[b, l] h[b, l] / sum_l m[b, l]`` (Sentence-BERT; all-MiniLM's pooling).
* ``last_token`` - the last real token, the only one a causal decoder (Llama, Qwen, SmolLM) lets see the whole
  text: position ``max {l : m[b, l] = 1}``. With right padding that is ``sum(m) - 1``; with left padding it is
  ``L - 1``; the ``max`` form is right for both, so no padding side has to be assumed.

>>> h = torch.arange(8.0).reshape(2, 4, 1)            # two rows, positions 0..3 and 4..7
>>> right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
>>> left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
>>> last_token_pool(h, right)[:, 0].tolist(), last_token_pool(h, left)[:, 0].tolist()
([1.0, 7.0], [3.0, 7.0])
>>> cls_pool(h, left)[:, 0].tolist(), mean_pool(h, right)[:, 0].tolist()
([2.0, 4.0], [0.5, 5.5])

:func:`sentence_pool` is ``mean`` per sentence: the tokens of sentence ``s`` (``ids[b, l] = s``) averaged into one
feature per sentence, for towers whose tokens are sentences.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from medclr.registry import Registry

Pooler = Callable[[Tensor, Tensor], Tensor]
POOLERS: Registry[Pooler] = Registry("pooling")


def _gather(hidden: Tensor, index: Tensor) -> Tensor:
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]  # [B, D]


@POOLERS.register("cls")
def cls_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """First real token of each row: ``[B, L, D], [B, L] -> [B, D]``."""
    return _gather(hidden, mask.long().argmax(dim=1))


@POOLERS.register("mean")
def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean over real tokens: ``[B, L, D], [B, L] -> [B, D]`` (a row without tokens gives zeros)."""
    m = mask.to(hidden.dtype).unsqueeze(-1)  # [B, L, 1]
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


@POOLERS.register("last_token")
def last_token_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Last real token of each row, whatever the padding side: ``[B, L, D], [B, L] -> [B, D]``."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)  # [B, L]
    return _gather(hidden, (positions * (mask > 0)).argmax(dim=1))


def sentence_pool(hidden: Tensor, sentence_ids: Tensor) -> tuple[Tensor, Tensor]:
    """Mean of each sentence's tokens: ``hidden [B, L, D]`` and ``sentence_ids [B, L]`` (the sentence of each token,
    -1 for none) -> ``[B, S, D]`` (S = the most sentences of any row; at least 1) and ``[B, S]`` bool, True where
    the row has that sentence (absent sentences are zero vectors).

    >>> h = torch.tensor([[[1.0], [3.0], [5.0], [7.0]]])
    >>> means, kept = sentence_pool(h, torch.tensor([[-1, 0, 0, 2]]))
    >>> means[0, :, 0].tolist(), kept[0].tolist()
    ([4.0, 0.0, 7.0], [True, False, True])
    """
    n = max(int(sentence_ids.max()) + 1 if sentence_ids.numel() else 0, 1)
    members = (sentence_ids.unsqueeze(-1) == torch.arange(n, device=sentence_ids.device)).to(hidden.dtype)  # [B, L, S]
    counts = members.sum(dim=1)  # [B, S]
    means = torch.einsum("bls,bld->bsd", members, hidden) / counts.clamp(min=1.0).unsqueeze(-1)
    return means, counts > 0
