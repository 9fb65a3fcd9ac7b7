"""Inference scores: each matches its loss's similarity, by name."""

from __future__ import annotations

import pytest
import torch

from medclr.losses import SCORES, cosine_scores, gram_scores, mip_scores, score_fn
from tests.losses import reference as ref
from tests.losses.helpers import unit


def test_score_fn_by_loss_name() -> None:
    assert SCORES.names() == ["convirt", "gram", "symile"]
    assert score_fn("convirt") is cosine_scores
    assert score_fn("symile") is mip_scores
    assert score_fn("gram") is gram_scores
    with pytest.raises(KeyError, match="valid names: convirt, gram, symile"):
        score_fn("clip")


def test_cosine_is_the_convirt_logit_over_the_scale() -> None:
    q, c = unit(4, 6, 1), unit(9, 6, 2)
    torch.testing.assert_close(cosine_scores([q], c), (q @ c.T).float())
    q2 = unit(4, 6, 3)
    torch.testing.assert_close(cosine_scores([q, q2], c), ((q @ c.T + q2 @ c.T) / 2).float())
    torch.testing.assert_close(cosine_scores([3.0 * q], 2.0 * c), cosine_scores([q], c))  # it is a cosine


def test_mip_scores_match_loops() -> None:
    x, e, r = unit(3, 5, 4), unit(3, 5, 5), unit(7, 5, 6)
    scores = mip_scores([x, e], r)  # [Q, D] x [Q, D] x [C, D] -> [Q, C]
    assert scores.shape == (3, 7)
    xs, es, rs = ref.rows(x), ref.rows(e), ref.rows(r)
    for q in range(3):
        for c in range(7):
            assert scores[q, c].item() == pytest.approx(ref.dot(xs[q], es[q], rs[c]), abs=1e-6)


@pytest.mark.parametrize("given", [1, 2, 3])
def test_gram_scores_are_negative_volumes(given: int) -> None:
    queries = [unit(3, 6, 10 + g) for g in range(given)]
    cands = unit(5, 6, 20)
    scores = gram_scores(queries, cands)
    assert scores.shape == (3, 5)
    for q in range(3):
        for c in range(5):
            vectors = ref.rows(torch.stack([*(g[q] for g in queries), cands[c]]))
            assert scores[q, c].item() == pytest.approx(-ref.volume(vectors), abs=1e-5)


@pytest.mark.parametrize("name", ["convirt", "gram"])
def test_true_candidate_ranks_first_for_aligned_embeddings(name: str) -> None:
    base = unit(10, 32, 30)
    x, e, reports = (torch.nn.functional.normalize(base + 0.1 * unit(10, 32, 31 + i), dim=-1) for i in range(3))
    assert (score_fn(name)([x, e], reports).argmax(dim=1) == torch.arange(10)).all()


def test_mip_ranks_the_candidate_closest_to_the_product_first() -> None:
    # Symile's geometry differs: a report that MIP-matches (x, e) points along x * e, not along x or e.
    x, e = unit(10, 32, 50), unit(10, 32, 51)
    reports = torch.nn.functional.normalize(x * e, dim=-1)
    assert (mip_scores([x, e], reports).argmax(dim=1) == torch.arange(10)).all()


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="at least one"):
        cosine_scores([], unit(2, 3, 0))
    with pytest.raises(ValueError, match=r"\[Q, D\]"):
        mip_scores([unit(2, 3, 0), unit(3, 3, 1)], unit(2, 3, 0))
