"""Inference scores that match each training objective, picked by the loss's name.

A model trained with one similarity should be queried with the same one: cosine for ConVIRT/CLIP, the MIP for
Symile, the negative Gram volume for GRAM. Every score function has one signature::

    scores = fn(given, candidates)   # given: sequence of [Q, D] (one tensor per given modality, row q = query q)
                                     # candidates: [C, D]  ->  scores [Q, C], higher = better match

``score_fn(loss_name)`` returns the function (registry ``SCORES``), so evaluation and retrieval need only the run's
loss name. Examples, for an X-ray ``x`` and an ECG ``e`` retrieving reports ``R``:

* ``cosine_scores([x], R)``: ``x @ R.T`` for unit vectors; with several given modalities the mean of their cosines
  (the natural score of a pairwise-trained model);
* ``mip_scores([x, e], R)``: ``(x * e) @ R.T`` = MIP(x_q, e_q, r_c) (Saporta et al., NeurIPS 2024: the Symile
  representations of the given modalities are a sufficient statistic for the missing one);
* ``gram_scores([x, e], R)``: ``-vol(x_q, e_q, r_c)`` (Cicchetti et al., ICLR 2025).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor

from medclr.losses.gram import gram_volumes
from medclr.losses.mip import product
from medclr.registry import Registry

ScoreFn = Callable[[Sequence[Tensor], Tensor], Tensor]
SCORES: Registry[ScoreFn] = Registry("score")


def _check(given: Sequence[Tensor], candidates: Tensor) -> None:
    if not given:
        raise ValueError("scoring needs at least one given modality")
    shapes = {tuple(g.shape) for g in given}
    if len(shapes) != 1 or candidates.ndim != 2 or given[0].ndim != 2 or given[0].shape[1] != candidates.shape[1]:
        raise ValueError(f"given must be [Q, D] tensors of one shape and candidates [C, D]; got {shapes} and "
                         f"{tuple(candidates.shape)}")


@SCORES.register("convirt")
def cosine_scores(given: Sequence[Tensor], candidates: Tensor) -> Tensor:
    """``[Q, C]`` cosine similarity (mean over the given modalities)."""
    _check(given, candidates)
    cand = F.normalize(candidates.float(), dim=-1)
    total = sum((F.normalize(g.float(), dim=-1) @ cand.T for g in given[1:]),
                start=F.normalize(given[0].float(), dim=-1) @ cand.T)
    return total / len(given)


@SCORES.register("symile")
def mip_scores(given: Sequence[Tensor], candidates: Tensor) -> Tensor:
    """``[Q, C]`` multilinear inner product MIP(given_1[q], ..., given_m[q], candidates[c])."""
    _check(given, candidates)
    return product([g.float() for g in given]) @ candidates.float().T


@SCORES.register("gram")
def gram_scores(given: Sequence[Tensor], candidates: Tensor) -> Tensor:
    """``[Q, C]`` negative Gram volume of (given_1[q], ..., given_m[q], candidates[c])."""
    _check(given, candidates)
    return -gram_volumes(candidates, list(given)).T  # volumes are [C, Q]: candidate as the "anchor"


def score_fn(loss_name: str) -> ScoreFn:
    """The score function matching the loss registered as ``loss_name`` ("convirt", "symile", "gram")."""
    return SCORES.get(loss_name)
