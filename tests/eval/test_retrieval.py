"""Retrieval ranks and metrics against a slow explicit-loop reference, plus hand-computed cases."""

from __future__ import annotations

import doctest
import itertools
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import Tensor

from medclr.eval import retrieval
from medclr.eval.metrics import mean_reciprocal_rank, median_rank, recall_at_k
from medclr.eval.retrieval import (
    LOCAL_SUFFIX,
    PositiveGroups,
    label_ceiling,
    local_retrieval_metrics,
    ranks,
    ranks_from_scores,
    retrieval_metrics,
    tasks,
)
from medclr.losses.local import LocalAlignment
from medclr.losses.scoring import score_fn

LOSSES = ["convirt", "symile", "gram"]


def partners(n: int, d: int, k: int, seed: int, noise: float = 1.5) -> list[Tensor]:
    """k modalities of n rows: a shared unit vector plus noise per modality (ranks spread from 1 to n)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, d, generator=g)
    return [torch.nn.functional.normalize(base + noise * torch.randn(n, d, generator=g), dim=-1) for _ in range(k)]


def matrix_score(given: Sequence[Tensor], candidates: Tensor) -> Tensor:
    """Score = given[0] @ candidates.T: with identity candidates, the rows of given[0] ARE the score matrix."""
    return given[0] @ candidates.T


def reference_ranks(full: Tensor, positive: np.ndarray, pessimistic: bool = False) -> list[int]:
    """Explicit loops over a full [Q, C] score matrix and a [Q, C] bool positive matrix."""
    out = []
    scores, pos = full.tolist(), positive.tolist()  # Python floats and bools: fast loops
    for q in range(len(scores)):
        best = max(scores[q][c] for c in range(len(scores[q])) if pos[q][c])
        above = 0
        for c in range(len(scores[q])):
            s = scores[q][c]
            if s > best or (pessimistic and s == best and not pos[q][c]):
                above += 1
        out.append(1 + above)
    return out


def test_docstring_examples() -> None:
    result = doctest.testmod(retrieval)
    assert result.attempted > 0 and result.failed == 0


def test_hand_computed_3x3() -> None:
    scores = torch.tensor([[0.9, 0.5, 0.1],  # partner 0.9 is the best -> rank 1
                           [0.8, 0.2, 0.9],  # two candidates above 0.2 -> rank 3
                           [0.3, 0.3, 0.3]])  # all tie: 1 (optimistic) or 3 (pessimistic)
    eye = torch.eye(3)
    assert ranks([scores], eye, matrix_score).tolist() == [1, 3, 1]
    assert ranks([scores], eye, matrix_score, ties="pessimistic").tolist() == [1, 3, 3]
    # groups: query 1 also accepts candidate 0 (same group) -> its best positive 0.8 has one score above it
    groups = PositiveGroups(np.array(["a", "a", "b"]), np.array(["a", "a", "b"]))
    assert ranks([scores], eye, matrix_score, groups).tolist() == [1, 2, 1]
    assert ranks([scores], eye, matrix_score, groups, ties="pessimistic").tolist() == [1, 2, 3]


def test_groups_with_different_query_and_candidate_counts() -> None:
    scores = torch.tensor([[0.1, 0.7, 0.3, 0.2], [0.6, 0.5, 0.4, 0.9]])  # 2 queries, 4 candidates
    groups = (np.array([3, 8]), np.array([8, 3, 3, 8]))  # a plain tuple works too
    assert ranks([scores], torch.eye(4), matrix_score, groups).tolist() == [1, 1]
    groups = (np.array([3, 8]), np.array([8, 8, 3, 8]))
    assert ranks([scores], torch.eye(4), matrix_score, groups).tolist() == [2, 1]


def test_missing_group_ids_match_nothing_and_a_query_needs_a_positive() -> None:
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    groups = PositiveGroups(np.array([None, "x"], dtype=object), np.array([None, "x"], dtype=object))
    with pytest.raises(ValueError, match="query 0 has no positive"):
        ranks([scores], torch.eye(2), matrix_score, groups)
    two_columns = PositiveGroups(np.array([[None, 1], ["x", 2]], dtype=object),
                                 np.array([[None, 1], ["x", 2]], dtype=object))
    assert ranks([scores], torch.eye(2), matrix_score, two_columns).tolist() == [1, 1]


def test_diagonal_needs_square_and_scores_must_not_be_nan() -> None:
    with pytest.raises(ValueError, match="as many queries as candidates"):
        ranks([torch.zeros(2, 3)], torch.eye(3), matrix_score)
    with pytest.raises(ValueError, match="NaN"):
        ranks([torch.tensor([[float("nan"), 0.0], [0.0, 1.0]])], torch.eye(2), matrix_score)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("n_given", [1, 2])
def test_ranks_match_explicit_loops(loss: str, n_given: int) -> None:
    *given, cand = partners(40, 8, n_given + 1, seed=n_given)
    score = score_fn(loss)
    got = ranks(given, cand, score, chunk=7)
    expected = reference_ranks(score(given, cand), np.eye(40, dtype=bool))
    assert got.tolist() == expected
    assert got.min() >= 1 and got.max() <= 40 and len(set(got.tolist())) > 3  # a real spread of ranks


@pytest.mark.parametrize("loss", LOSSES)
def test_group_ranks_match_explicit_loops(loss: str) -> None:
    q, cand = partners(30, 6, 2, seed=9)
    query_ids = np.random.default_rng(1).integers(0, 8, size=30)
    cand_ids = np.random.default_rng(2).integers(0, 8, size=30)
    cand_ids[:8] = np.arange(8)  # every query group has a candidate
    score = score_fn(loss)
    got = ranks([q], cand, score, PositiveGroups(query_ids, cand_ids), chunk=4)
    assert got.tolist() == reference_ranks(score([q], cand), query_ids[:, None] == cand_ids[None, :])


@pytest.mark.parametrize("chunk", [1, 3, 16, 1024])
def test_chunk_size_does_not_change_ranks(chunk: int) -> None:
    x, e, r = partners(33, 8, 3, seed=4)
    for loss in LOSSES:
        assert ranks([x, e], r, score_fn(loss), chunk=chunk).tolist() == \
            ranks([x, e], r, score_fn(loss), chunk=33).tolist()


def test_single_row() -> None:
    (x, r) = partners(1, 4, 2, seed=0)
    assert ranks([x], r, score_fn("convirt")).tolist() == [1]


def reference_metrics(emb: dict[str, np.ndarray], present: dict[str, np.ndarray], loss: str,
                      groups: dict[str, np.ndarray] | None, ks: Sequence[int]) -> dict[str, float]:
    """retrieval_metrics' point values from a full score matrix and explicit loops over the positives."""
    score, out = score_fn(loss), {}
    for given, target in tasks(list(emb)):
        rows = np.logical_and.reduce([present[m] for m in (*given, target)])
        n = int(rows.sum())
        if n == 0:
            continue
        full = score([torch.from_numpy(emb[m][rows]) for m in given], torch.from_numpy(emb[target][rows]))
        ids = {m: groups[m][rows].tolist() for m in groups} if groups is not None else {}
        positive = np.zeros((n, n), dtype=bool)
        for i, j in itertools.product(range(n), range(n)):
            same_query = all(m in ids for m in given) and all(ids[m][i] == ids[m][j] for m in given)
            same_target = target in ids and ids[target][i] == ids[target][j]
            positive[i, j] = i == j or same_query or same_target
        r = np.array(reference_ranks(full, positive))
        name = f"{'+'.join(given)}->{target}"
        out.update({f"recall@{k}/{name}": recall_at_k(r, k) for k in ks})
        out.update({f"mrr/{name}": mean_reciprocal_rank(r), f"median_rank/{name}": median_rank(r), f"n/{name}": n})
    return out


def world(n: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    emb = {m: t.numpy() for m, t in zip(("cxr", "ecg", "report"), partners(n, 8, 3, seed=seed), strict=True)}
    rng = np.random.default_rng(seed)
    present = {m: rng.random(n) < 0.8 for m in emb}
    return emb, present


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("with_groups", [False, True])
def test_retrieval_metrics_match_the_reference(loss: str, with_groups: bool) -> None:
    emb, present = world(36, seed=11)
    groups = None
    if with_groups:  # repeated report texts, and X-rays that come in identical pairs
        groups = {"report": np.random.default_rng(0).integers(0, 12, 36).astype(str), "cxr": np.arange(36) // 2}
    out = retrieval_metrics(emb, present, loss, groups=groups, ks=(1, 5), reps=50, chunk=5)
    expected = reference_metrics(emb, present, loss, groups, ks=(1, 5))
    assert {k: out[k] for k in expected} == pytest.approx(expected)
    names = {k.split("/", 1)[1] for k in expected}
    assert names == {"cxr->ecg", "cxr->report", "ecg->cxr", "ecg->report", "report->cxr", "report->ecg",
                     "ecg+report->cxr", "cxr+report->ecg", "cxr+ecg->report"}
    for name in names:
        for stat in ("recall@1", "recall@5", "mrr"):
            assert out[f"{stat}/{name}_ci_low"] <= out[f"{stat}/{name}"] <= out[f"{stat}/{name}_ci_high"]
    assert set(out) == set(expected) | {f"{s}/{n}_ci_{e}" for s in ("recall@1", "recall@5", "mrr")
                                        for n in names for e in ("low", "high")}


def test_label_ceiling_by_hand() -> None:
    # groups: 4 normal rows (K=1: 1/4 each, K=5: 1), 2 rows with finding A (1/2 each), 1 with A and B (1)
    labels = np.array([[0, 0]] * 4 + [[1, 0]] * 2 + [[1, 1]])
    assert label_ceiling(labels, 1) == pytest.approx((4 * 0.25 + 2 * 0.5 + 1) / 7)
    assert label_ceiling(labels, 5) == 1.0
    assert label_ceiling(np.array([[np.nan], [np.nan], [1.0]]), 1) == pytest.approx((0.5 + 0.5 + 1) / 3)  # NaN: a value
    emb, _ = world(7, seed=1)
    out = retrieval_metrics(emb, {}, "convirt", ks=(1, 5), reps=0, target_labels={"cxr": labels})
    assert out["recall@1/report->cxr_label_ceiling"] == pytest.approx(label_ceiling(labels, 1))
    assert out["recall@5/ecg+report->cxr_label_ceiling"] == 1.0 and "recall@1/cxr->ecg_label_ceiling" not in out


def test_groups_only_raise_recall() -> None:
    emb, present = world(40, seed=3)
    plain = retrieval_metrics(emb, present, "convirt", reps=0)
    groups = {"report": np.zeros(40, dtype=int)}  # every report identical: any report is right
    grouped = retrieval_metrics(emb, present, "convirt", groups=groups, reps=0)
    assert grouped["recall@1/cxr->report"] == 1.0 and grouped["recall@1/report->cxr"] == 1.0
    assert all(grouped[k] >= plain[k] for k in plain if k.startswith("recall@") and not k.endswith(("low", "high")))
    assert np.isnan(plain["recall@1/cxr->ecg_ci_low"])  # reps=0: no intervals


def test_pairs_without_shared_rows_are_skipped_and_two_to_one_is_optional() -> None:
    emb, _ = world(10, seed=5)
    present = {"cxr": np.arange(10) < 5, "ecg": np.arange(10) >= 5, "report": np.ones(10, dtype=bool)}
    out = retrieval_metrics(emb, present, "symile", reps=10)
    assert "n/cxr->ecg" not in out and "n/ecg->cxr" not in out and "n/cxr+ecg->report" not in out
    assert out["n/cxr->report"] == 5 and out["n/report->ecg"] == 5
    pairs_only = retrieval_metrics(emb, {}, "gram", two_to_one=False, reps=0)  # no present: all rows
    assert not any("+" in k for k in pairs_only) and pairs_only["n/cxr->ecg"] == 10


def test_one_shared_row_and_two_modalities() -> None:
    emb, _ = world(4, seed=6)
    present = {m: np.array([True, False, False, False]) for m in emb}
    out = retrieval_metrics({m: emb[m] for m in ("cxr", "report")}, present, "convirt", reps=20)
    assert out["recall@1/cxr->report"] == 1.0 and out["mrr/cxr->report"] == 1.0 and out["n/cxr->report"] == 1
    assert out["recall@1/cxr->report_ci_low"] == 1.0
    assert not any("+" in k for k in out)


def test_tasks_for_four_modalities() -> None:
    found = tasks(["a", "b", "c", "d"])
    assert len(found) == 12 + 4 * 3 and (("b", "c"), "a") in found and (("a", "b"), "d") in found


# --- ranked by GLoRIA's local score ---------------------------------------------------------------------------------
def test_ranks_from_scores_match_ranks() -> None:
    scores = torch.randn(7, 7, generator=torch.Generator().manual_seed(3))
    eye = torch.eye(7)
    groups = PositiveGroups(np.arange(7) // 2, np.arange(7) // 2)
    for positives in (None, groups):
        for ties in ("optimistic", "pessimistic"):
            assert ranks_from_scores(scores, positives, chunk=3, ties=ties).tolist() == \
                ranks([scores], eye, matrix_score, positives, ties=ties).tolist()


def test_local_scores_with_one_word_and_one_region_are_cosines() -> None:
    """One region per image and one word per report: the context is the region, Z = cos(region, word), so the local
    ranks are the pooled-cosine ranks of the same vectors."""
    emb, present = world(30, seed=5)
    rows = present["cxr"] & present["report"]
    regions, words = torch.from_numpy(emb["cxr"])[:, None], torch.from_numpy(emb["report"])[:, None]  # [n, 1, D]
    groups = {"report": np.arange(30) % 11}
    local = local_retrieval_metrics(regions, words, torch.ones(30, 1, dtype=torch.bool), LocalAlignment(), rows=rows,
                                    groups=groups, ks=(1, 5), reps=0)
    pooled = retrieval_metrics({m: emb[m] for m in ("cxr", "report")}, present, "convirt", groups=groups, ks=(1, 5),
                               reps=0)
    names = ("report->cxr", "cxr->report")
    assert set(local) == {k.replace(n, n + LOCAL_SUFFIX) for k in pooled for n in names if n in k}
    for key, value in pooled.items():
        name = next(n for n in names if n in key)
        assert local[key.replace(name, name + LOCAL_SUFFIX)] == pytest.approx(value, nan_ok=True), key


def test_local_ranks_by_hand_and_masked_words_do_not_count() -> None:
    """Two images with two regions, two reports with two words each (the second of report 1 is padding).

    Image 0 has regions e0, e1; image 1 has e2, e2. Report 0's words are e0, e1: both find themselves in image 0
    (Z = 1) while in image 1 the context is e2 (cos 0 for both words); report 1's word e2 finds itself in image 1
    (Z = 1) but not in image 0 (its context there is a mix of e0 and e1, cos 0). So both reports and both images
    rank their partner first. Making report 1's padded word e0 changes nothing while the mask hides it; unmasked,
    it finds itself in image 0 and report 1 -> image 1 ties with image 0 (optimistic rank 1, pessimistic 2)."""
    e = torch.eye(3)
    regions = torch.stack([torch.stack([e[0], e[1]]), torch.stack([e[2], e[2]])])  # [2, 2, 3]
    words = torch.stack([torch.stack([e[0], e[1]]), torch.stack([e[2], e[0]])])  # [2, 2, 3]
    sharp = LocalAlignment(temperatures=(50.0, 50.0, 10.0))  # near-hard attention and maximum over words
    mask = torch.tensor([[True, True], [True, False]])
    out = local_retrieval_metrics(regions, words, mask, sharp, ks=(1,), reps=0, ties="pessimistic")
    assert out["recall@1/report->cxr_local"] == 1.0 and out["recall@1/cxr->report_local"] == 1.0
    assert out["n/report->cxr_local"] == 2.0 and out["median_rank/cxr->report_local"] == 1.0
    unmasked = local_retrieval_metrics(regions, words, torch.ones(2, 2, dtype=torch.bool), sharp, ks=(1,), reps=0,
                                       ties="pessimistic")
    assert unmasked["recall@1/report->cxr_local"] == 0.5  # report 1 now matches image 0 as well as image 1


def test_local_retrieval_uses_only_rows_with_both_and_their_label_ceiling() -> None:
    emb, _ = world(12, seed=2)
    regions, words = torch.from_numpy(emb["cxr"])[:, None], torch.from_numpy(emb["report"])[:, None]
    rows = np.arange(12) % 3 != 0  # 8 rows
    labels = {"cxr": (np.arange(12)[:, None] % 2).astype(np.float32)}
    out = local_retrieval_metrics(regions, words, torch.ones(12, 1, dtype=torch.bool), LocalAlignment(), rows=rows,
                                  ks=(1,), reps=0, target_labels=labels)
    assert out["n/report->cxr_local"] == 8.0
    assert out["recall@1/report->cxr_local_label_ceiling"] == pytest.approx(label_ceiling(labels["cxr"][rows], 1))
    assert "recall@1/cxr->report_local_label_ceiling" not in out  # no report labels given
    assert local_retrieval_metrics(regions, words, torch.ones(12, 1, dtype=torch.bool), LocalAlignment(),
                                   rows=np.zeros(12, dtype=bool)) == {}
