"""Cross-modal retrieval: exact ranks of the true candidate, and Recall@K / MRR / median rank per task.

Protocol (``docs/PROTOCOLS.md``, "Retrieval"): for every ordered pair of modalities (q, t), each of the n rows
that have both is a query ``q_i`` and all n ``t_j`` are the candidates; the true candidate is the query's own
row ``t_i``. With three or more modalities there are also two-to-one tasks: given X-ray + ECG of row i, find
its report among all n reports (scored jointly, e.g. by Symile's MIP or GRAM's volume). Scores come from the
run's loss, :func:`medclr.losses.scoring.score_fn`, so a model is queried with the similarity it was trained on.

* ``recall@K`` = fraction of queries whose true candidate ranks <= K. **Chance level is K/n** (n candidates):
  Recall@10 of 0.05 on n = 1000 rows is 50x chance, on n = 100 it is half of chance. Compare tasks of the same n.
* ``mrr`` = mean of 1/rank; ``median_rank`` (1 is perfect, about n/2 is chance).

Rank of a query = 1 + the number of candidates scoring strictly higher than its best-scoring positive.
Ties: by default (``ties="optimistic"``) a negative that ties with the best positive does not push it down, so
a model whose candidate tower collapsed to one vector (all scores of a query equal) would rank every query
first; ``ties="pessimistic"`` counts tied negatives as ranked above (such a model then ranks last). With
continuous embeddings exact ties do not happen; the two differ only for degenerate models or duplicate items
(mark duplicates with ``groups`` instead, so that they count as positives).

Local score: a run trained with GLoRIA's local word-region term learned a second image-report similarity, how well
each word of the report finds a region of the image that looks like it; :func:`local_retrieval_metrics` ranks
the same pairs by it (keys ending in ``_local``), as GLoRIA retrieves with its local similarity.

Duplicates: when identical items repeat (the same report text in many studies), retrieving any copy is
correct. ``groups[m]`` ``[n]`` gives equal ids to identical items of modality m; candidate j is then a positive
of query i when the target items are identical (``groups[t][i] == groups[t][j]``) or the query items are
(all given modalities' ids of rows i and j equal), the same rule the losses use for their positives.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from medclr.eval.metrics import bootstrap_mean_ci, mean_reciprocal_rank, median_rank, recall_at_k
from medclr.losses.local import LocalAlignment, word_region_scores
from medclr.losses.scoring import ScoreFn, score_fn

Ties = Literal["optimistic", "pessimistic"]


class PositiveGroups(NamedTuple):
    """Which candidates are positives of which queries, by group id (ints or strings; None/NaN = no group).

    ``query`` ``[Q]`` or ``[Q, G]`` and ``candidate`` ``[C]`` or ``[C, G]``: candidate c is a positive of query q
    when ``query[q, g] == candidate[c, g]`` for **any** column g (each column is one equivalence, e.g. "same
    report text" and "same X-ray"). A missing id matches nothing. A plain tuple ``(query, candidate)`` works too.
    """

    query: np.ndarray
    candidate: np.ndarray


def _group_codes(positives: tuple[np.ndarray, np.ndarray], q: int, c: int) -> tuple[Tensor, Tensor]:
    """Integer codes ``[Q, G]``, ``[C, G]`` equal exactly where the ids are equal (missing: -1 vs -2)."""
    qg, cg = (np.asarray(a, dtype=object) for a in positives)
    qg = qg.reshape(len(qg), -1)
    cg = cg.reshape(len(cg), -1)
    if qg.shape[0] != q or cg.shape[0] != c or qg.shape[1] != cg.shape[1]:
        raise ValueError(f"positive groups must be [Q, G] = [{q}, G] and [C, G] = [{c}, G]; got {qg.shape}, "
                         f"{cg.shape}")
    q_cols, c_cols = [], []
    for g in range(qg.shape[1]):
        codes, _ = pd.factorize(np.concatenate([qg[:, g], cg[:, g]]), use_na_sentinel=True)  # -1 = missing
        q_cols.append(codes[:q])
        c_cols.append(np.where(codes[q:] < 0, -2, codes[q:]))  # a missing candidate id never meets a query's
    return torch.from_numpy(np.stack(q_cols, 1)), torch.from_numpy(np.stack(c_cols, 1))


@torch.no_grad()
def ranks(given: Sequence[Tensor], candidates: Tensor, score: ScoreFn,
          positives: tuple[np.ndarray, np.ndarray] | None = None, *, chunk: int = 1024,
          ties: Ties = "optimistic") -> np.ndarray:
    """``[Q]`` int64 1-based rank of each query's best-scoring positive among ``candidates`` ``[C, D]``.

    ``given``: one ``[Q, D]`` tensor per given modality (row q = query q); ``score(given, candidates) -> [Q, C]``
    (higher = better). ``positives=None``: query q's only positive is candidate q (needs Q == C); otherwise
    :class:`PositiveGroups` ``(query_ids, candidate_ids)``. Rank = 1 + number of candidates scoring strictly
    higher than the best positive (``ties="optimistic"``) or, ``"pessimistic"``, + the negatives tying with it.
    Exact; the score matrix is computed ``chunk`` queries at a time, so memory is O(chunk x C) (several float32
    ``[chunk, C]`` intermediates inside ``score``), never O(Q x C).

    >>> from medclr.losses.scoring import cosine_scores
    >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    >>> ranks([x], x[[0, 2, 1]], cosine_scores).tolist()  # query 1's partner [0.6, 0.8] loses to [0, 1]
    [1, 2, 2]
    """
    if not given:
        raise ValueError("ranks needs at least one given modality")
    return _ranks(lambda start, stop: score([g[start:stop] for g in given], candidates), given[0].shape[0],
                  candidates.shape[0], positives, chunk, ties)


@torch.no_grad()
def ranks_from_scores(scores: Tensor, positives: tuple[np.ndarray, np.ndarray] | None = None, *, chunk: int = 1024,
                      ties: Ties = "optimistic") -> np.ndarray:
    """:func:`ranks` for a score matrix ``[Q, C]`` already computed (e.g. GLoRIA's local scores, which come for all
    pairs at once).

    >>> ranks_from_scores(torch.tensor([[0.2, 0.9], [0.1, 0.5]])).tolist()  # query 0's partner loses to 0.9
    [2, 1]
    """
    return _ranks(lambda start, stop: scores[start:stop], scores.shape[0], scores.shape[1], positives, chunk, ties)


def _ranks(scores_of: Callable[[int, int], Tensor], n_q: int, n_c: int,
           positives: tuple[np.ndarray, np.ndarray] | None, chunk: int, ties: Ties) -> np.ndarray:
    """The ranks of :func:`ranks`; ``scores_of(start, stop)`` gives the ``[stop - start, C]`` scores of those
    queries."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1; got {chunk}")
    if positives is None and n_q != n_c:
        raise ValueError(f"diagonal positives need as many queries as candidates; got {n_q} and {n_c} "
                         "(pass PositiveGroups for other layouts)")
    codes = None if positives is None else _group_codes(positives, n_q, n_c)
    out = np.empty(n_q, dtype=np.int64)
    for start in range(0, n_q, chunk):
        stop = min(n_q, start + chunk)
        s = scores_of(start, stop)  # [b, C]
        if torch.isnan(s).any():
            raise ValueError("retrieval scores contain NaN; check the embeddings for NaN rows")
        if codes is None:
            pos = torch.zeros_like(s, dtype=torch.bool)
            pos[torch.arange(stop - start, device=s.device), torch.arange(start, stop, device=s.device)] = True
        else:
            q_codes, c_codes = (x.to(s.device) for x in codes)
            pos = (q_codes[start:stop, None, :] == c_codes[None, :, :]).any(-1)  # [b, C]
            if not pos.any(1).all():
                missing = start + int((~pos.any(1)).nonzero()[0, 0])
                raise ValueError(f"query {missing} has no positive candidate")
        best = s.masked_fill(~pos, float("-inf")).amax(1, keepdim=True)  # [b, 1]
        above = (s > best).sum(1)
        if ties == "pessimistic":
            above += ((s == best) & ~pos).sum(1)
        out[start:stop] = 1 + above.cpu().numpy()
    return out


def tasks(modalities: Sequence[str], two_to_one: bool = True) -> list[tuple[tuple[str, ...], str]]:
    """Retrieval tasks ``(given, target)``: every ordered pair, then (>= 3 modalities) every two-to-one task.

    >>> tasks(["cxr", "ecg", "report"])[-1]
    (('cxr', 'ecg'), 'report')
    """
    out: list[tuple[tuple[str, ...], str]] = [((q,), t) for q, t in itertools.permutations(modalities, 2)]
    if two_to_one and len(modalities) >= 3:
        for t in modalities:
            others = [m for m in modalities if m != t]
            out.extend((pair, t) for pair in itertools.combinations(others, 2))
    return out


def _joint_ids(columns: Sequence[np.ndarray]) -> np.ndarray:
    """One id per row for the tuple of ids ``columns`` (NaN where any is missing)."""
    codes = np.stack([pd.factorize(np.asarray(c, dtype=object), use_na_sentinel=True)[0] for c in columns], 1)
    joint = np.unique(codes, axis=0, return_inverse=True)[1].reshape(-1).astype(np.float64)
    joint[(codes < 0).any(1)] = np.nan
    return joint


def task_positives(given: Sequence[str], target: str, rows: np.ndarray,
                   groups: Mapping[str, np.ndarray] | None) -> PositiveGroups | None:
    """Group-id positives of one task on ``rows`` (see the module docstring), or None for the diagonal."""
    if not groups:
        return None
    columns = []
    if all(m in groups for m in given):
        columns.append(_joint_ids([np.asarray(groups[m])[rows] for m in given]))
    if target in groups:
        columns.append(_joint_ids([np.asarray(groups[target])[rows]]))
    if not columns:
        return None
    ids = np.stack(columns, 1)  # [n, G]; row i's ids are both the query's and the candidate's
    return PositiveGroups(ids, ids)


def label_ceiling(labels: np.ndarray, k: int) -> float:
    """Recall@K of a *label oracle*: a model that knows each target's label vector exactly and nothing else.

    It ranks the ``g_i`` candidates whose labels equal the true target's first, in random order, so the target is in
    the top K with probability ``min(1, K / g_i)``; the mean over queries is the best recall@K any model can reach
    by recognising these labels alone. On a world where half the X-rays are normal it stays far below 1: a report
    saying "no acute findings" cannot single out one of ~90 normal test X-rays.

    >>> label_ceiling(np.array([[0, 1], [0, 1], [0, 1], [1, 0]]), k=1)   # 3 tied rows (1/3 each), 1 unique
    0.5
    """
    codes = np.unique(np.nan_to_num(np.asarray(labels, dtype=np.float64), nan=-1.0), axis=0, return_inverse=True)[1]
    sizes = np.bincount(codes.reshape(-1))[codes.reshape(-1)]  # [n] g_i, the row's own group included
    return float(np.minimum(1.0, k / sizes).mean())


def retrieval_metrics(emb: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray], loss_name: str, *,
                      groups: Mapping[str, np.ndarray] | None = None, ks: Sequence[int] = (1, 5, 10),
                      two_to_one: bool = True, reps: int = 1000, seed: int = 0, chunk: int = 1024,
                      ties: Ties = "optimistic", target_labels: Mapping[str, np.ndarray] | None = None
                      ) -> dict[str, float]:
    """Recall@K, MRR, median rank and their bootstrap CIs for every retrieval task, as flat keys.

    ``emb[m]`` ``[n, D]`` rows of one table (row i of every modality is the same study); ``present[m]`` ``[n]``
    bool (a modality missing from ``present`` counts as present everywhere). A task uses the rows where all its
    modalities are present and is skipped when there are none. Keys, with ``name`` = ``"<q>-><t>"`` or
    ``"<q1>+<q2>-><t>"`` (given modalities in the order of ``emb``): ``recall@K/name`` with ``_ci_low`` /
    ``_ci_high``, ``mrr/name`` with its CI, ``median_rank/name`` and ``n/name`` (the number of queries =
    candidates; chance recall@K is K/n). CIs: percentile bootstrap over the queries with the candidates fixed
    (:mod:`medclr.eval.metrics`); ``reps=0`` skips them. ``target_labels[m]`` ``[n, L]``: the ground-truth labels
    of modality ``m`` (the synthetic world's ``label/cxr:*``), adding ``recall@K/name_label_ceiling`` for tasks
    retrieving ``m`` (:func:`label_ceiling`).
    """
    score = score_fn(loss_name)
    out: dict[str, float] = {}
    for given, target in tasks(list(emb), two_to_one):
        rows = np.ones(len(emb[target]), dtype=bool)
        for m in (*given, target):
            if m in present:
                rows &= np.asarray(present[m], dtype=bool)
        if not rows.any():
            continue
        r = ranks([torch.from_numpy(np.asarray(emb[m][rows], dtype=np.float32)) for m in given],
                  torch.from_numpy(np.asarray(emb[target][rows], dtype=np.float32)), score,
                  task_positives(given, target, rows, groups), chunk=chunk, ties=ties)
        labels = None if target_labels is None or target not in target_labels else np.asarray(target_labels[target])
        out.update(rank_metrics(r, f"{'+'.join(given)}->{target}", ks, reps, seed,
                                None if labels is None else labels[rows]))
    return out


def rank_metrics(r: np.ndarray, name: str, ks: Sequence[int], reps: int, seed: int,
                 target_labels: np.ndarray | None = None) -> dict[str, float]:
    """The flat keys of one task (:func:`retrieval_metrics`) from its ranks ``r`` ``[n]``; ``target_labels``
    ``[n, L]``: the targets' ground truth, for ``recall@K/<name>_label_ceiling``."""
    per_query = np.stack([*(r <= k for k in ks), 1.0 / r], 1)  # [n, len(ks) + 1]
    low, high = bootstrap_mean_ci(per_query, reps, seed) if reps > 0 else (np.full(len(ks) + 1, np.nan),) * 2
    out: dict[str, float] = {}
    for j, k in enumerate(ks):
        out[f"recall@{k}/{name}"] = recall_at_k(r, k)
        out[f"recall@{k}/{name}_ci_low"], out[f"recall@{k}/{name}_ci_high"] = float(low[j]), float(high[j])
    out[f"mrr/{name}"] = mean_reciprocal_rank(r)
    out[f"mrr/{name}_ci_low"], out[f"mrr/{name}_ci_high"] = float(low[-1]), float(high[-1])
    out[f"median_rank/{name}"] = median_rank(r)
    out[f"n/{name}"] = float(len(r))
    if target_labels is not None:
        for k in ks:
            out[f"recall@{k}/{name}_label_ceiling"] = label_ceiling(target_labels, k)
    return out


LOCAL_SUFFIX = "_local"
LOCAL_BUDGET = 1 << 25  # attention scores per image chunk of the local score matrix (~128 MiB of float32)


@torch.no_grad()
def local_retrieval_metrics(regions: Tensor, words: Tensor, word_mask: Tensor, alignment: LocalAlignment, *,
                            rows: np.ndarray | None = None, groups: Mapping[str, np.ndarray] | None = None,
                            ks: Sequence[int] = (1, 5, 10), reps: int = 1000, seed: int = 0,
                            ties: Ties = "optimistic", target_labels: Mapping[str, np.ndarray] | None = None
                            ) -> dict[str, float]:
    """Retrieval between an image and a text modality ranked by GLoRIA's *local* score instead of the pooled one.

    A run trained with a local term (``loss.kwargs.local_weight``, :mod:`medclr.losses.local`) learned a second
    similarity: ``Z(image, report)``, how well each of the report's words finds a region of the image that looks
    like it (GLoRIA, Huang et al., ICCV 2021, retrieves with its global and local similarities). Here every
    (image, report) pair of the ``rows`` (``[n]`` bool, default all) is scored by ``Z`` with the run's
    ``alignment`` temperatures (tau1, tau2; tau3 only scales it) and ranked exactly as :func:`retrieval_metrics`
    ranks cosines, with the same positives (``groups``) and keys, the task name ending in ``_local``:
    ``recall@K/<text>-><image>_local``, ``recall@K/<image>-><text>_local``, their CIs, ``mrr/...``,
    ``median_rank/...``, ``n/...`` and, with ``target_labels``, ``..._label_ceiling``.

    ``regions [n, M, D]``, ``words [n, L, D]``: the unit token grids (:func:`medclr.eval.embeddings.embed_token_grids`),
    ``word_mask [n, L]`` the real words. Cost: n^2 x L x M x D multiply-adds (n = 174, L = 60, M = 256, D = 128:
    3e10, seconds; n = 1,000: a few minutes on 2 cores); memory is bounded by scoring a chunk of images at a time.
    """
    keep = np.ones(regions.shape[0], dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    image, text = alignment.image, alignment.text
    out: dict[str, float] = {}
    if not keep.any():
        return out
    index = torch.from_numpy(np.flatnonzero(keep))
    v, w, mask = regions[index].float(), words[index].float(), word_mask[index].bool()
    tau_attn, tau_words, _ = alignment.temperatures
    chunk = max(1, LOCAL_BUDGET // (w.shape[0] * w.shape[1] * v.shape[1]))
    z = word_region_scores(v, w, mask, tau_attn, tau_words, chunk=chunk)  # [n images, n reports]
    for query, target, scores in ((text, image, z.T), (image, text, z)):
        r = ranks_from_scores(scores, task_positives((query,), target, keep, groups), ties=ties)
        labels = None if target_labels is None or target not in target_labels else np.asarray(target_labels[target])
        out.update(rank_metrics(r, f"{query}->{target}{LOCAL_SUFFIX}", ks, reps, seed,
                                None if labels is None else labels[keep]))
    return out
