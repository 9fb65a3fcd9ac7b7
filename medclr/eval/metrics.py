"""Evaluation metrics with percentile-bootstrap confidence intervals: AUROC per label and rank metrics.

AUROC (``docs/PROTOCOLS.md``: zero-shot CheXpert and PTB-XL report AUROC per label and the macro mean) is the
probability that a random positive scores above a random negative, ties counting one half (the Mann-Whitney U
statistic over ``n_pos * n_neg``). Example: positives score (0.9, 0.4), negatives (0.5, 0.1): of the four
(pos, neg) pairs three are ordered correctly, so AUROC = 3/4. Labels are float with NaN = unknown (those rows
are dropped) and ``>= 0.5`` positive, as in every medclr manifest.

Rank metrics (protocol "Retrieval") take 1-based ranks of the true candidate: ``recall@K`` = fraction of
queries with rank <= K (chance K/C for C candidates), MRR = mean of 1/rank, and the median rank.

Confidence intervals use the percentile bootstrap (Efron & Tibshirani, 1993, ch. 13): resample the n evaluation
rows with replacement ``reps`` times, recompute the statistic on each replicate and take the ``alpha/2`` and
``1 - alpha/2`` quantiles of the replicates. The interval is conditional on the fixed model and, for retrieval,
on the fixed candidate set: only the queries (rows) are resampled. Replicates that are NaN (e.g. a resample
without a single positive) are ignored; when fewer than half the replicates are finite the interval is
``(nan, nan)``.

Vectorisation: all resamples come from :func:`bootstrap_indices`, which draws blocks of ``[b, n]`` row indices
at once (about 2M indices per block), so one seed gives the same resamples to every statistic. Means (recall,
MRR) and AUROC are then computed for a whole block without a Python loop per replicate: a replicate is a vector
of row multiplicities (``np.bincount``), a mean is ``counts @ values / n``, and AUROC is the Mann-Whitney
statistic with those multiplicities as weights over the rows sorted once by score.
:func:`bootstrap_ci` is the generic, one-call-per-replicate fallback for any other statistic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

BLOCK_INDICES = 1 << 21  # row indices per bootstrap block (16 MiB of int64)


def _positive_mask(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(known, positive)`` bool masks of a float label vector (NaN = unknown, >= 0.5 positive)."""
    y = np.asarray(y, dtype=np.float64)
    known = ~np.isnan(y)
    return known, known & (np.nan_to_num(y, nan=0.0) >= 0.5)


def auroc(y: np.ndarray, scores: np.ndarray) -> float:
    """AUROC of ``scores`` [n] for labels ``y`` [n] (NaN rows dropped); NaN when a class is missing.

    >>> auroc(np.array([1, 1, 0, 0, np.nan]), np.array([0.9, 0.4, 0.5, 0.1, 0.7]))
    0.75
    """
    from sklearn.metrics import roc_auc_score

    known, pos = _positive_mask(y)
    n_pos = int(pos.sum())
    if n_pos == 0 or n_pos == int(known.sum()):
        return float("nan")
    return float(roc_auc_score(pos[known], np.asarray(scores, dtype=np.float64)[known]))


def bootstrap_indices(n: int, reps: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Blocks of ``[b, n]`` row indices drawn uniformly with replacement; ``reps`` rows in all."""
    if reps < 1 or n < 1:
        raise ValueError(f"bootstrap needs reps >= 1 and n >= 1; got reps={reps}, n={n}")
    rng = np.random.default_rng(seed)
    step = max(1, BLOCK_INDICES // n)
    for start in range(0, reps, step):
        yield rng.integers(0, n, size=(min(step, reps - start), n))


def multiplicities(idx: np.ndarray, n: int) -> np.ndarray:
    """``[b, n]`` float64 counts of each row in each resample of ``idx`` ``[b, n]`` (one ``bincount``)."""
    b = idx.shape[0]
    flat = (idx + np.arange(b)[:, None] * n).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def percentile_ci(replicates: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``replicates`` ``[reps, S]``: the ``alpha/2``, ``1 - alpha/2`` quantiles of the finite values.

    A column with fewer than half its replicates finite gives NaN for both ends.
    """
    reps = np.asarray(replicates, dtype=np.float64).reshape(len(replicates), -1)
    finite = np.isfinite(reps)
    ok = finite.sum(axis=0) * 2 >= reps.shape[0]
    low = np.full(reps.shape[1], np.nan)
    high = np.full(reps.shape[1], np.nan)
    if ok.any():
        kept = np.where(finite, reps, np.nan)[:, ok]
        low[ok], high[ok] = np.nanquantile(kept, [alpha / 2, 1 - alpha / 2], axis=0)
    return low, high


def bootstrap_ci(stat: Callable[[np.ndarray], float], n: int, reps: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(idx)``, ``idx`` [n] row indices drawn with replacement.

    Generic path: ``stat`` is called once per replicate (the indices themselves are drawn in vectorised blocks).
    ``(nan, nan)`` for n = 0 or when fewer than half the replicates are finite.

    >>> values = np.arange(100.0)
    >>> low, high = bootstrap_ci(lambda idx: values[idx].mean(), len(values), reps=200)
    >>> bool(low < 49.5 < high)
    True
    """
    if n < 1:
        return float("nan"), float("nan")
    out = np.array([stat(idx) for block in bootstrap_indices(n, reps, seed) for idx in block], dtype=np.float64)
    low, high = percentile_ci(out, alpha)
    return float(low[0]), float(high[0])


def bootstrap_mean_ci(values: np.ndarray, reps: int = 1000, seed: int = 0,
                      alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap of the column means of ``values`` ``[n, S]``, vectorised: ``([S] low, [S] high)``.

    Same resamples (for the same ``seed``) as :func:`bootstrap_ci` with ``stat = lambda idx: values[idx].mean()``.
    """
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)  # [n, S]
    n = values.shape[0]
    if n < 1:
        nan = np.full(values.shape[1], np.nan)
        return nan, nan.copy()
    means = [multiplicities(idx, n) @ values / n for idx in bootstrap_indices(n, reps, seed)]  # [b, S] each
    return percentile_ci(np.concatenate(means), alpha)


def weighted_auroc(counts: np.ndarray, y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC of each resample given by row multiplicities ``counts`` ``[b, n]`` -> ``[b]`` (NaN: one class).

    With ``w`` the multiplicities, AUROC = sum over positive rows i and negative rows j of
    ``w_i w_j ([s_i > s_j] + [s_i == s_j] / 2)`` over ``W_pos W_neg``. Rows are sorted by score once; per
    resample the weights are summed per distinct score (``reduceat``) and each positive level meets the
    cumulative negative weight below it: O(b n) per block, no sort per replicate. ``counts`` of ones gives the
    plain AUROC.
    """
    known, pos = _positive_mask(y)
    rows = np.flatnonzero(known)
    s = np.asarray(scores, dtype=np.float64)[rows]
    if not np.isfinite(s).all():
        raise ValueError("AUROC scores must be finite where the label is known")
    order = np.argsort(s, kind="stable")
    rows, s = rows[order], s[order]
    if rows.size == 0:
        return np.full(counts.shape[0], np.nan)
    starts = np.flatnonzero(np.r_[True, np.diff(s) != 0])  # first row of each distinct score
    w = counts[:, rows]  # [b, m] multiplicities in score order
    is_pos = pos[rows]
    w_pos = np.add.reduceat(w * is_pos, starts, axis=1)  # [b, U]
    w_neg = np.add.reduceat(w * ~is_pos, starts, axis=1)  # [b, U]
    below = np.cumsum(w_neg, axis=1) - w_neg  # negative weight strictly below each level
    num = (w_pos * (below + 0.5 * w_neg)).sum(axis=1)
    den = w_pos.sum(axis=1) * w_neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def label_auroc_metrics(y: np.ndarray, scores: np.ndarray, names: Sequence[str], *, reps: int = 1000, seed: int = 0,
                        prefix: str = "auroc") -> dict[str, float]:
    """Per-label AUROC with bootstrap CIs, class counts, and the macro mean with its CI, as flat keys.

    ``y`` ``[n, K]`` float (NaN = unknown), ``scores`` ``[n, K]`` (higher = more likely positive), ``names`` [K].
    Keys: ``<prefix>/<name>``, ``<prefix>/<name>_ci_low``, ``<prefix>/<name>_ci_high``, ``n_pos/<name>``,
    ``n_neg/<name>``; ``<prefix>_macro`` = mean over the labels with a finite AUROC (both classes present),
    ``<prefix>_macro_ci_low`` / ``_ci_high`` and ``n_labels_scored``. A label with one class present gets NaN
    and its counts. The macro is bootstrapped over the same resampled rows as the labels: in each replicate it
    is the mean over the same scored labels, and a replicate where one of them lost a class is NaN (ignored).
    """
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    scores = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
    if y.shape != scores.shape or y.shape[1] != len(names):
        raise ValueError(f"labels {y.shape}, scores {scores.shape} and {len(names)} names do not match")
    n, k = y.shape
    out: dict[str, float] = {}
    point = np.array([auroc(y[:, j], scores[:, j]) for j in range(k)])
    scored = np.isfinite(point)
    reps_by_label = np.full((max(reps, 1), k), np.nan)
    if n > 0 and reps > 0:
        done = 0
        for idx in bootstrap_indices(n, reps, seed):
            counts = multiplicities(idx, n)
            for j in range(k):
                reps_by_label[done:done + len(idx), j] = weighted_auroc(counts, y[:, j], scores[:, j])
            done += len(idx)
    low, high = percentile_ci(reps_by_label)
    for j, name in enumerate(names):
        known, pos = _positive_mask(y[:, j])
        out[f"{prefix}/{name}"] = float(point[j])
        out[f"{prefix}/{name}_ci_low"], out[f"{prefix}/{name}_ci_high"] = float(low[j]), float(high[j])
        out[f"n_pos/{name}"], out[f"n_neg/{name}"] = float(pos.sum()), float(known.sum() - pos.sum())
    out[f"{prefix}_macro"] = float(point[scored].mean()) if scored.any() else float("nan")
    macro_low, macro_high = percentile_ci(reps_by_label[:, scored].mean(axis=1) if scored.any()
                                          else np.full(len(reps_by_label), np.nan))
    out[f"{prefix}_macro_ci_low"], out[f"{prefix}_macro_ci_high"] = float(macro_low[0]), float(macro_high[0])
    out["n_labels_scored"] = float(scored.sum())
    return out


def _ranks(ranks: np.ndarray) -> np.ndarray:
    r = np.asarray(ranks)
    if r.size and r.min() < 1:
        raise ValueError(f"ranks are 1-based; got a minimum of {r.min()}")
    return r


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Fraction of queries whose true candidate ranks within the top ``k`` (NaN for no queries).

    >>> recall_at_k(np.array([1, 3, 7]), 5)
    0.6666666666666666
    """
    r = _ranks(ranks)
    return float(np.mean(r <= k)) if r.size else float("nan")


def mean_reciprocal_rank(ranks: np.ndarray) -> float:
    """Mean of ``1 / rank`` (1.0 when every true candidate ranks first; NaN for no queries).

    >>> mean_reciprocal_rank(np.array([1, 2, 4]))
    0.5833333333333334
    """
    r = _ranks(ranks)
    return float(np.mean(1.0 / r)) if r.size else float("nan")


def median_rank(ranks: np.ndarray) -> float:
    """Median rank of the true candidate (lower is better; NaN for no queries).

    >>> median_rank(np.array([1, 2, 10, 40]))
    6.0
    """
    r = _ranks(ranks)
    return float(np.median(r)) if r.size else float("nan")
