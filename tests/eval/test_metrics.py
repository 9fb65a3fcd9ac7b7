"""AUROC, bootstrap intervals and rank metrics: known values, sklearn as the reference, vectorised == generic."""

from __future__ import annotations

import doctest
from collections.abc import Callable

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medclr.eval import metrics
from medclr.eval.metrics import (
    auroc,
    bootstrap_ci,
    bootstrap_indices,
    bootstrap_mean_ci,
    label_auroc_metrics,
    mean_reciprocal_rank,
    median_rank,
    multiplicities,
    recall_at_k,
    weighted_auroc,
)


def labelled(n: int, k: int, seed: int, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Labels [n, k] (some NaN) and scores [n, k] correlated with them (rounded to create ties)."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.3).astype(np.float64)
    scores = y + rng.normal(size=(n, k))
    if ties:
        scores = np.round(scores, 1)
    y[rng.random((n, k)) < 0.1] = np.nan
    return y, scores


def mean_of(values: np.ndarray) -> Callable[[np.ndarray], float]:
    return lambda idx: float(values[idx].mean())


def auroc_of(y: np.ndarray, scores: np.ndarray) -> Callable[[np.ndarray], float]:
    return lambda idx: auroc(y[idx], scores[idx])


def test_docstring_examples() -> None:
    result = doctest.testmod(metrics)
    assert result.attempted > 0 and result.failed == 0


def test_auroc_known_value_drops_unknown_and_counts_ties_half() -> None:
    # positives 0.9, 0.4; negatives 0.5, 0.1 -> 3 of 4 pairs ordered; the NaN row (score 0.7) is ignored
    assert auroc(np.array([1, 1, 0, 0, np.nan]), np.array([0.9, 0.4, 0.5, 0.1, 0.7])) == 0.75
    assert auroc(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == 0.5
    assert auroc(np.array([0.7, 0.2]), np.array([1.0, 0.0])) == 1.0  # >= 0.5 is positive


@pytest.mark.parametrize("y", [[1.0, 1.0, np.nan], [0.0, 0.0], [np.nan, np.nan], []])
def test_auroc_without_both_classes_is_nan(y: list[float]) -> None:
    assert np.isnan(auroc(np.array(y), np.arange(len(y), dtype=float)))


def test_auroc_matches_sklearn() -> None:
    y, s = labelled(200, 3, seed=1)
    for j in range(3):
        known = ~np.isnan(y[:, j])
        assert auroc(y[:, j], s[:, j]) == pytest.approx(roc_auc_score(y[known, j], s[known, j]))


def test_weighted_auroc_equals_sklearn_on_each_resample() -> None:
    y, s = labelled(60, 1, seed=2)
    y, s = y[:, 0], s[:, 0]
    ones = np.ones((1, 60))
    assert weighted_auroc(ones, y, s)[0] == pytest.approx(auroc(y, s), abs=1e-12)
    idx = next(bootstrap_indices(60, 25, seed=3))
    fast = weighted_auroc(multiplicities(idx, 60), y, s)
    slow = [auroc(y[i], s[i]) for i in idx]
    np.testing.assert_allclose(fast, slow, atol=1e-12)


def test_weighted_auroc_nan_when_a_resample_has_one_class() -> None:
    y, s = np.array([1.0, 0.0, 0.0]), np.array([0.9, 0.1, 0.2])
    counts = np.array([[0.0, 2.0, 1.0], [1.0, 1.0, 1.0]])  # first resample: no positive
    out = weighted_auroc(counts, y, s)
    assert np.isnan(out[0]) and out[1] == 1.0


def test_multiplicities_count_each_row() -> None:
    idx = np.array([[0, 0, 2], [1, 2, 2]])
    np.testing.assert_array_equal(multiplicities(idx, 3), [[2, 0, 1], [0, 1, 2]])


def test_bootstrap_ci_is_reproducible_and_brackets_the_mean() -> None:
    values = np.random.default_rng(0).normal(size=400)
    low, high = bootstrap_ci(lambda idx: values[idx].mean(), len(values), reps=300, seed=1)
    assert (low, high) == bootstrap_ci(lambda idx: values[idx].mean(), len(values), reps=300, seed=1)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * values.std() / np.sqrt(400), rel=0.25)  # ~ normal theory


def test_bootstrap_ci_ignores_nan_replicates_and_gives_up_below_half() -> None:
    calls = iter(range(10_000))
    some_nan = bootstrap_ci(lambda idx: np.nan if next(calls) % 3 == 0 else 1.0, 10, reps=90)
    assert some_nan == (1.0, 1.0)
    calls = iter(range(10_000))
    mostly_nan = bootstrap_ci(lambda idx: 1.0 if next(calls) % 3 == 0 else np.nan, 10, reps=90)
    assert np.isnan(mostly_nan).all()
    assert np.isnan(bootstrap_ci(lambda idx: 0.0, 0)).all()


def test_vectorised_mean_ci_uses_the_same_resamples_as_the_generic_path() -> None:
    values = np.random.default_rng(4).random((50, 2))
    low, high = bootstrap_mean_ci(values, reps=200, seed=7)
    for j in range(2):
        assert (low[j], high[j]) == pytest.approx(bootstrap_ci(mean_of(values[:, j]), 50, reps=200, seed=7),
                                                  abs=1e-12)


def test_bootstrap_blocks_cover_all_replicates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "BLOCK_INDICES", 50)  # 5 replicates per block of n = 10 rows
    blocks = list(bootstrap_indices(10, 23, seed=0))
    assert [len(b) for b in blocks] == [5, 5, 5, 5, 3]
    assert all(b.shape[1] == 10 and b.min() >= 0 and b.max() < 10 for b in blocks)


def test_label_auroc_metrics_keys_values_and_one_class_label() -> None:
    y, s = labelled(120, 3, seed=5)
    y[:, 2] = np.where(np.isnan(y[:, 2]), np.nan, 0.0)  # label C: negatives only
    out = label_auroc_metrics(y, s, ["A", "B", "C"], reps=100, seed=0)
    for name in ("A", "B"):
        assert out[f"auroc/{name}"] == pytest.approx(auroc(y[:, "AB".index(name)], s[:, "AB".index(name)]))
        assert out[f"auroc/{name}_ci_low"] < out[f"auroc/{name}"] < out[f"auroc/{name}_ci_high"]
    assert np.isnan(out["auroc/C"]) and np.isnan(out["auroc/C_ci_low"]) and np.isnan(out["auroc/C_ci_high"])
    assert out["n_pos/C"] == 0 and out["n_neg/C"] == float((~np.isnan(y[:, 2])).sum())
    assert out["n_pos/A"] + out["n_neg/A"] == float((~np.isnan(y[:, 0])).sum())
    assert out["auroc_macro"] == pytest.approx((out["auroc/A"] + out["auroc/B"]) / 2)
    assert out["auroc_macro_ci_low"] < out["auroc_macro"] < out["auroc_macro_ci_high"]
    assert out["n_labels_scored"] == 2
    assert set(label_auroc_metrics(y, s, ["A", "B", "C"], reps=10, prefix="zs")) >= {"zs/A", "zs_macro"}


def test_label_auroc_cis_equal_the_generic_bootstrap_with_sklearn() -> None:
    y, s = labelled(40, 2, seed=6)
    out = label_auroc_metrics(y, s, ["A", "B"], reps=60, seed=3)
    for j, name in enumerate("AB"):
        ref = bootstrap_ci(auroc_of(y[:, j], s[:, j]), 40, reps=60, seed=3)
        assert (out[f"auroc/{name}_ci_low"], out[f"auroc/{name}_ci_high"]) == pytest.approx(ref, abs=1e-12)

    def macro(idx: np.ndarray) -> float:
        return float(np.mean([auroc(y[idx, j], s[idx, j]) for j in range(2)]))  # NaN if a label lost a class

    ref = bootstrap_ci(macro, 40, reps=60, seed=3)
    assert (out["auroc_macro_ci_low"], out["auroc_macro_ci_high"]) == pytest.approx(ref, abs=1e-12)


def test_label_auroc_metrics_no_scored_label_and_bad_shapes() -> None:
    out = label_auroc_metrics(np.zeros((5, 1)), np.zeros((5, 1)), ["A"], reps=20)
    assert np.isnan(out["auroc_macro"]) and np.isnan(out["auroc_macro_ci_low"]) and out["n_labels_scored"] == 0
    with pytest.raises(ValueError, match="do not match"):
        label_auroc_metrics(np.zeros((5, 2)), np.zeros((5, 2)), ["A"])


def test_rank_metrics_known_values() -> None:
    r = np.array([1, 2, 4, 20])
    assert recall_at_k(r, 1) == 0.25 and recall_at_k(r, 4) == 0.75 and recall_at_k(r, 100) == 1.0
    assert mean_reciprocal_rank(r) == pytest.approx((1 + 0.5 + 0.25 + 0.05) / 4)
    assert median_rank(r) == 3.0
    empty = np.array([], dtype=np.int64)
    assert np.isnan(recall_at_k(empty, 1)) and np.isnan(mean_reciprocal_rank(empty)) and np.isnan(median_rank(empty))
    with pytest.raises(ValueError, match="1-based"):
        recall_at_k(np.array([0, 1]), 1)
