"""GramLoss against a loop reference (Laplace determinants); closed forms; zero volume; masks; duplicates."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medclr.errors import MedclrInputError
from medclr.losses import LOSSES, GramLoss, gram_volumes
from medclr.losses.gram import gram_determinants, gram_volumes_det, safe_sqrt
from tests.losses import reference as ref
from tests.losses.helpers import batch, unit

MODS = ["report", "cxr", "ecg", "labs"]


def test_registered_by_name() -> None:
    assert LOSSES.get("gram") is GramLoss


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_determinants_match_laplace_expansion(k: int) -> None:
    anchor = unit(4, 6, seed=k)
    others = [unit(5, 6, seed=10 * k + m) for m in range(k - 1)]
    dets = gram_determinants(anchor, others)  # [4, 5]
    for i in range(4):
        for j in range(5):
            vectors = ref.rows(torch.stack([anchor[i], *(o[j] for o in others)]))
            gram = [[ref.dot(u, v) for v in vectors] for u in vectors]
            assert dets[i, j].item() == pytest.approx(ref.det(gram), abs=1e-12)


@pytest.mark.parametrize("k", [2, 3])
def test_closed_form_equals_det_path(k: int) -> None:
    anchor, others = unit(7, 5, seed=1), [unit(7, 5, seed=2 + m) for m in range(k - 1)]
    torch.testing.assert_close(gram_volumes(anchor, others), gram_volumes_det(anchor, others))


def test_unit_vector_closed_forms_from_the_docstring() -> None:
    a, b, c = unit(1, 8, 1), unit(1, 8, 2), unit(1, 8, 3)
    c12, c13, c23 = (a @ b.T).item(), (a @ c.T).item(), (b @ c.T).item()
    assert gram_determinants(a, [b]).item() == pytest.approx(1 - c12**2, abs=1e-12)
    expected = 1 + 2 * c12 * c13 * c23 - c12**2 - c13**2 - c23**2
    assert gram_determinants(a, [b, c]).item() == pytest.approx(expected, abs=1e-12)
    eye = torch.eye(3, dtype=torch.float64)
    assert gram_volumes(eye[:1], [eye[1:2], eye[2:3]]).item() == pytest.approx(1.0)  # the unit cube


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_matches_loop_reference(k: int, smoothing: float) -> None:
    emb = batch(MODS[:k], n=5, d=6, seed=20 + k)
    out = GramLoss(anchor="report", label_smoothing=smoothing)(emb, torch.tensor(4.0, dtype=torch.float64))
    assert out["loss"].item() == pytest.approx(ref.gram(emb, "report", 4.0, smoothing), rel=1e-10)
    assert {"loss/report->tuple", "loss/tuple->report", "n/complete", "vol/positive"} <= set(out)


def test_float32_matches_reference_and_half_inputs_compute_in_float32() -> None:
    emb = batch(MODS[:3], n=6, d=8, seed=30, dtype=torch.float32)
    out = GramLoss()(emb, torch.tensor(10.0))
    assert out["loss"].item() == pytest.approx(ref.gram(emb, "report", 10.0, 0.1), rel=1e-5)
    half = GramLoss()({m: x.half() for m, x in emb.items()}, torch.tensor(10.0))
    assert half["loss"].dtype == torch.float32


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_volume_zero_and_finite_gradients_for_identical_vectors(k: int) -> None:
    v = unit(4, 6, seed=40, dtype=torch.float32).requires_grad_()
    vol = gram_volumes(v, [v] * (k - 1))  # anchor i and tuple i are the same vector repeated
    assert vol.diagonal().abs().max().item() < 2e-3  # float32 rounding of 1 - c^2 near c = 1
    loss = GramLoss()({m: v for m in MODS[:k]}, torch.tensor(20.0))["loss"]
    loss.backward()
    assert v.grad is not None and torch.isfinite(v.grad).all()
    exact = unit(3, 6, seed=41).requires_grad_()
    vol64 = gram_volumes(exact, [exact] * (k - 1))
    assert vol64.diagonal().abs().max().item() < 1e-6
    vol64.sum().backward()
    assert exact.grad is not None and torch.isfinite(exact.grad).all()


def test_safe_sqrt_gradient_is_finite_at_and_below_zero() -> None:
    x = torch.tensor([-1e-7, 0.0, 1e-20, 0.25], dtype=torch.float64, requires_grad=True)
    y = safe_sqrt(x)
    assert y.tolist() == pytest.approx([0.0, 0.0, 1e-10, 0.5])
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(g).all() and g[0] == 0 and g[1] == 0 and g[3].item() == pytest.approx(1.0)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_gradcheck_float64(k: int) -> None:
    emb = batch(MODS[:k], n=3, d=5, seed=50 + k, grad=True)
    s = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    loss = GramLoss(label_smoothing=0.1)

    def f(s: torch.Tensor, *xs: torch.Tensor) -> torch.Tensor:
        return loss(dict(zip(MODS[:k], xs, strict=True)), s)["loss"]

    assert torch.autograd.gradcheck(f, (s, *emb.values()))


def test_batch_permutation_invariance() -> None:
    emb = batch(MODS[:3], n=8, d=5, seed=60)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    loss = GramLoss()
    torch.testing.assert_close(loss(emb, 7.0)["loss"], loss({m: x[perm] for m, x in emb.items()}, 7.0)["loss"])


def test_anchor_choice_and_modality_order() -> None:
    emb = batch(MODS[:3], n=5, d=4, seed=70)
    reordered = {m: emb[m] for m in ("ecg", "report", "cxr")}
    torch.testing.assert_close(GramLoss()(emb, 5.0)["loss"], GramLoss()(reordered, 5.0)["loss"])
    out = GramLoss(anchor="cxr", label_smoothing=0.0)(emb, 5.0)
    assert out["loss"].item() == pytest.approx(ref.gram(emb, "cxr", 5.0, 0.0), rel=1e-10)


def test_complete_rows_only() -> None:
    emb = batch(MODS[:3], n=6, d=4, seed=80)
    present = {"cxr": torch.tensor([1, 1, 0, 1, 1, 1], dtype=torch.bool),
               "ecg": torch.tensor([1, 1, 1, 1, 0, 1], dtype=torch.bool)}
    out = GramLoss()(emb, 5.0, present=present)
    keep = [0, 1, 3, 5]
    expected = ref.gram({m: x[keep] for m, x in emb.items()}, "report", 5.0, 0.1)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-10)
    assert int(out["n/complete"]) == 4


def test_groups_make_identical_reports_positives() -> None:
    emb = batch(MODS[:3], n=6, d=5, seed=90)
    ids = [0, 1, 0, 2, 2, 3]
    emb["report"] = emb["report"][torch.tensor([0, 1, 0, 3, 3, 5])]
    out = GramLoss()(emb, 6.0, groups={"report": torch.tensor(ids)})
    assert out["loss"].item() == pytest.approx(ref.gram(emb, "report", 6.0, 0.1, {"report": ids}), rel=1e-10)


def test_aligned_tuples_give_a_lower_loss() -> None:
    # Note: if the non-anchor modalities of every row were nearly parallel to each other, every tuple would span
    # ~0 volume whatever the anchor (vol(a, o1, o2) = vol(o1, o2) * dist(a, span(o1, o2))): noise keeps them apart.
    base = unit(8, 16, seed=100)
    noisy = {m: F.normalize(base + 0.5 * unit(8, 16, seed=101 + i), dim=-1) for i, m in enumerate(MODS[:3])}
    mismatched = dict(noisy, report=noisy["report"].roll(1, 0))
    aligned_loss, mismatched_loss = GramLoss()(noisy, 10.0)["loss"], GramLoss()(mismatched, 10.0)["loss"]
    assert aligned_loss < 0.5 * mismatched_loss


def test_errors() -> None:
    with pytest.raises(ValueError, match="label_smoothing"):
        GramLoss(label_smoothing=1.0)
    with pytest.raises(MedclrInputError, match="report"):
        GramLoss()(batch(["cxr", "ecg"], n=3, d=2), 1.0)
    with pytest.raises(MedclrInputError, match="besides the anchor"):
        GramLoss()(batch(["report"], n=3, d=2), 1.0)
