"""Alignment, uniformity (Wang & Isola 2020) and the STRUCTURE-style neighbourhood regulariser."""

from __future__ import annotations

import math

import pytest
import torch

from medclr.losses import alignment, structure_loss, uniformity
from medclr.losses.extras import js_divergence_rows, neighbourhood
from tests.losses import reference as ref
from tests.losses.helpers import unit


def test_alignment_matches_loops() -> None:
    a, b = unit(6, 4, 1), unit(6, 4, 2)
    ra, rb = ref.rows(a), ref.rows(b)
    expected = sum(sum((x - y) ** 2 for x, y in zip(u, v, strict=True)) for u, v in zip(ra, rb, strict=True)) / 6
    assert alignment(a, b).item() == pytest.approx(expected, rel=1e-12)
    assert alignment(a, a).item() == 0.0
    assert alignment(a, b, alpha=1.0).item() == pytest.approx(
        sum(math.dist(u, v) for u, v in zip(ra, rb, strict=True)) / 6, rel=1e-12)


def test_uniformity_matches_loops_and_worked_example() -> None:
    x = unit(5, 3, 3)
    rx = ref.rows(x)
    pairs = [(i, j) for i in range(5) for j in range(5) if i != j]
    expected = math.log(sum(math.exp(-2 * math.dist(rx[i], rx[j]) ** 2) for i, j in pairs) / len(pairs))
    assert uniformity(x).item() == pytest.approx(expected, rel=1e-12)
    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    assert uniformity(opposite).item() == pytest.approx(-8.0)
    assert uniformity(torch.tensor([[1.0, 0.0], [1.0, 0.0]])).item() == pytest.approx(0.0)


def test_uniformity_gradient_is_finite_with_duplicate_rows() -> None:
    x = unit(4, 3, 4)
    x = torch.cat([x, x[:1]]).requires_grad_()  # row 4 == row 0: distance 0
    uniformity(x).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert uniformity(x[:1]).item() == 0.0


def test_structure_loss_is_zero_when_neighbourhoods_are_kept() -> None:
    reference = unit(12, 20, 5)
    rotation, _ = torch.linalg.qr(torch.randn(20, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    assert structure_loss(reference, reference @ rotation).item() == pytest.approx(0.0, abs=1e-12)
    assert structure_loss(reference, 3.0 * reference, levels=3).item() == pytest.approx(0.0, abs=1e-12)


def test_structure_loss_grows_as_neighbourhoods_drift_and_trains_only_the_aligned_side() -> None:
    reference = unit(12, 20, 6).requires_grad_()
    close = torch.nn.functional.normalize(reference.detach() + 0.05 * unit(12, 20, 7), dim=-1)
    far = unit(12, 8, 8).requires_grad_()  # another dimension is fine
    assert 0 < structure_loss(reference, close).item() < structure_loss(reference, far).item() <= math.log(2)
    structure_loss(reference, far).backward()
    assert reference.grad is None and far.grad is not None and torch.isfinite(far.grad).all()


def test_structure_levels_use_random_walk_powers() -> None:
    reference, aligned = unit(8, 6, 9), unit(8, 6, 10)
    p, q = neighbourhood(reference, 0.1), neighbourhood(aligned, 0.1)
    assert torch.allclose(p.sum(1), torch.ones(8, dtype=torch.float64)) and p.diagonal().abs().max() == 0
    expected = (js_divergence_rows(p, q).mean() + js_divergence_rows(p @ p, q @ q).mean()) / 2
    torch.testing.assert_close(structure_loss(reference, aligned, temperature=0.1, levels=2), expected)


def test_js_divergence_matches_loops() -> None:
    p = torch.softmax(unit(3, 5, 11), dim=1)
    q = torch.softmax(unit(3, 5, 12), dim=1)
    got = js_divergence_rows(p, q)
    for i in range(3):
        pi, qi = p[i].tolist(), q[i].tolist()
        mi = [(a + b) / 2 for a, b in zip(pi, qi, strict=True)]
        kl = lambda u, v: sum(a * math.log(a / b) for a, b in zip(u, v, strict=True))  # noqa: E731
        assert got[i].item() == pytest.approx(0.5 * kl(pi, mi) + 0.5 * kl(qi, mi), rel=1e-10)


def test_structure_errors() -> None:
    with pytest.raises(ValueError, match="rows"):
        structure_loss(unit(3, 2, 0), unit(4, 2, 1))
    with pytest.raises(ValueError, match="levels"):
        structure_loss(unit(3, 2, 0), unit(3, 2, 1), levels=0)
