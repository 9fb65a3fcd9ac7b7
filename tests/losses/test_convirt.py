"""ConvirtLoss against a loop reference, CLIP at lam = 0.5, invariants, masks, duplicates, DCL."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medclr.errors import MedclrInputError
from medclr.losses import LOSSES, ConvirtLoss
from medclr.losses.base import hard_negative_logits
from medclr.losses.extras import alignment, uniformity
from tests.losses import reference as ref
from tests.losses.helpers import batch

PAIRS = [("cxr", "report"), ("ecg", "report")]


def test_registered_by_name() -> None:
    assert LOSSES.get("convirt") is ConvirtLoss


@pytest.mark.parametrize("lam", [0.75, 0.5, 0.0, 1.0])
def test_matches_loop_reference(lam: float) -> None:
    emb = batch(["cxr", "ecg", "report"], n=6, d=5, seed=1)
    out = ConvirtLoss(pairs=PAIRS, lam=lam)(emb, torch.tensor(3.7, dtype=torch.float64))
    assert out["loss"].item() == pytest.approx(ref.convirt(emb, PAIRS, lam, 3.7), rel=1e-12, abs=1e-12)
    assert {"loss/cxr-report", "loss/ecg-report", "loss/cxr->report", "loss/report->cxr"} <= set(out)
    assert int(out["n/cxr-report"]) == 6 and int(out["n/ecg-report"]) == 6


def test_float32_matches_reference_to_float_precision() -> None:
    emb = batch(["cxr", "report"], n=8, d=16, seed=2, dtype=torch.float32)
    out = ConvirtLoss(pairs=[("cxr", "report")])(emb, torch.tensor(14.3))
    assert out["loss"].dtype == torch.float32
    assert out["loss"].item() == pytest.approx(ref.convirt(emb, [("cxr", "report")], 0.75, 14.3), rel=1e-5)


def test_lam_half_is_clip() -> None:
    emb = batch(["cxr", "report"], n=7, d=4, seed=3)
    s = torch.tensor(10.0, dtype=torch.float64)
    logits = s * emb["cxr"] @ emb["report"].T
    target = torch.arange(7)
    clip = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    out = ConvirtLoss(pairs=[("cxr", "report")], lam=0.5)(emb, s)
    torch.testing.assert_close(out["loss"], clip)


def test_worked_example() -> None:
    emb = {"a": torch.tensor([[1.0, 0.0], [0.0, 1.0]]), "b": torch.tensor([[0.8, 0.6], [0.6, 0.8]])}
    loss = ConvirtLoss(pairs=[("a", "b")], lam=0.3)
    assert loss(emb, 10.0)["loss"].item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)
    swapped = {"a": emb["a"], "b": emb["b"].flip(0)}
    assert loss(swapped, 10.0)["loss"].item() == pytest.approx(math.log(1 + math.exp(2)), rel=1e-6)


def test_batch_permutation_invariance() -> None:
    emb = batch(["cxr", "ecg", "report"], n=9, d=6, seed=4)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    loss = ConvirtLoss(pairs=PAIRS)
    torch.testing.assert_close(loss(emb, 5.0)["loss"], loss({m: x[perm] for m, x in emb.items()}, 5.0)["loss"])


def test_gradcheck_float64() -> None:
    emb = batch(["cxr", "ecg", "report"], n=4, d=3, seed=5, grad=True)
    s = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
    loss = ConvirtLoss(pairs=PAIRS)

    def f(s: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return loss({"cxr": a, "ecg": b, "report": c}, s)["loss"]

    assert torch.autograd.gradcheck(f, (s, emb["cxr"], emb["ecg"], emb["report"]))


def test_missing_rows_use_pairs_where_both_present() -> None:
    emb = batch(["cxr", "ecg", "report"], n=6, d=4, seed=6)
    present = {"ecg": torch.tensor([1, 1, 0, 1, 0, 1], dtype=torch.bool),
               "report": torch.tensor([1, 1, 1, 1, 1, 0], dtype=torch.bool)}
    out = ConvirtLoss(pairs=PAIRS)(emb, 4.0, present=present)
    cxr_rows, ecg_rows = [0, 1, 2, 3, 4], [0, 1, 3]
    expected = (ref.convirt({m: emb[m][cxr_rows] for m in emb}, [PAIRS[0]], 0.75, 4.0)
                + ref.convirt({m: emb[m][ecg_rows] for m in emb}, [PAIRS[1]], 0.75, 4.0)) / 2
    assert out["loss"].item() == pytest.approx(expected, rel=1e-12)
    assert int(out["n/cxr-report"]) == 5 and int(out["n/ecg-report"]) == 3


def test_pair_without_rows_is_reported_and_skipped() -> None:
    emb = batch(["cxr", "report"], n=5, d=4, seed=7, grad=True)
    out = ConvirtLoss(pairs=PAIRS)(emb, 4.0)
    assert int(out["n/ecg-report"]) == 0
    assert out["loss"].item() == pytest.approx(ref.convirt(emb, [PAIRS[0]], 0.75, 4.0), rel=1e-12)
    nothing = ConvirtLoss(pairs=PAIRS)(emb, 4.0, present={"report": torch.zeros(5, dtype=torch.bool)})
    assert nothing["loss"].item() == 0.0
    nothing["loss"].backward()  # still in the graph
    assert emb["cxr"].grad is not None


def test_groups_make_identical_reports_positives() -> None:
    emb = batch(["cxr", "ecg", "report"], n=6, d=5, seed=8)
    ids = [0, 1, 0, 2, 1, 3]
    emb["report"] = emb["report"][torch.tensor([0, 1, 0, 3, 1, 5])]  # identical texts -> identical embeddings
    groups = {"report": torch.tensor(ids)}
    out = ConvirtLoss(pairs=PAIRS)(emb, 6.0, groups=groups)
    assert out["loss"].item() == pytest.approx(ref.convirt(emb, PAIRS, 0.75, 6.0, {"report": ids}), rel=1e-12)
    # With exact duplicates InfoNCE's mean does not change: a duplicate's logit in the denominator equals the
    # positive's, and uniform soft targets over the duplicates give back exactly what it takes (DCL, whose
    # denominator drops the positives, does change: test_decoupled_matches_reference). Before, this asserted
    # "<", which held only by float rounding on one CPU and failed on another.
    without = ConvirtLoss(pairs=PAIRS)(emb, 6.0)["loss"]
    assert out["loss"].item() == pytest.approx(without.item(), rel=1e-12)
    emb["report"][2] += 0.1  # no longer a duplicate: now the groups matter
    assert ConvirtLoss(pairs=PAIRS)(emb, 6.0, groups=groups)["loss"] != ConvirtLoss(pairs=PAIRS)(emb, 6.0)["loss"]


def test_positives_mask_equals_groups() -> None:
    emb = batch(["cxr", "report"], n=5, d=4, seed=9)
    ids = torch.tensor([0, 1, 0, 1, 2])
    mask = ids[:, None] == ids[None, :]
    loss = ConvirtLoss(pairs=[("cxr", "report")])
    torch.testing.assert_close(loss(emb, 3.0, positives=mask)["loss"],
                               loss(emb, 3.0, groups={"report": ids})["loss"])


def test_decoupled_matches_reference() -> None:
    emb = batch(["cxr", "ecg", "report"], n=6, d=5, seed=10)
    out = ConvirtLoss(pairs=PAIRS, decoupled=True)(emb, 3.0)
    assert out["loss"].item() == pytest.approx(ref.convirt(emb, PAIRS, 0.75, 3.0, dcl=True), rel=1e-12)
    ids = [0, 0, 1, 2, 2, 2]
    with_groups = ConvirtLoss(pairs=PAIRS, decoupled=True)(emb, 3.0, groups={"report": torch.tensor(ids)})
    expected = ref.convirt(emb, PAIRS, 0.75, 3.0, {"report": ids}, dcl=True)
    assert with_groups["loss"].item() == pytest.approx(expected, rel=1e-12)


def test_hard_negative_worked_example() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([0])
    hn = F.cross_entropy(hard_negative_logits(logits, target, None, 1.0), target)
    # w = 2 softmax([1, 0]) = [1.462, 0.538]: -2 + log(e^2 + 1.462 e + 0.538) (docstring)
    w1 = 2 * math.e / (math.e + 1)
    assert hn.item() == pytest.approx(-2 + math.log(math.exp(2) + w1 * math.e + (2 - w1)), rel=1e-12)
    assert hn.item() == pytest.approx(0.4767, abs=1e-4)
    assert F.cross_entropy(logits, target).item() == pytest.approx(0.4076, abs=1e-4)
    torch.testing.assert_close(hard_negative_logits(logits, target, None, 0.0), logits)  # beta 0: InfoNCE


def test_hard_negative_matches_reference() -> None:
    emb = batch(["cxr", "ecg", "report"], n=6, d=5, seed=13)
    out = ConvirtLoss(pairs=PAIRS, hard_negative_beta=0.7)(emb, 3.0)
    assert out["loss"].item() == pytest.approx(ref.convirt(emb, PAIRS, 0.75, 3.0, beta=0.7), rel=1e-12)
    assert out["loss"].item() > ConvirtLoss(pairs=PAIRS)(emb, 3.0)["loss"].item()  # hard ones weigh more
    ids = [0, 0, 1, 2, 2, 3]  # positives keep their logits and are never re-weighted
    grouped = ConvirtLoss(pairs=PAIRS, hard_negative_beta=0.7)(emb, 3.0, groups={"report": torch.tensor(ids)})
    expected = ref.convirt(emb, PAIRS, 0.75, 3.0, {"report": ids}, beta=0.7)
    assert grouped["loss"].item() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="hard_negative_beta"):
        ConvirtLoss(hard_negative_beta=-1.0)


def test_hard_negative_weights_are_not_differentiated() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0]], dtype=torch.float64, requires_grad=True)

    F.cross_entropy(hard_negative_logits(logits, torch.tensor([0]), None, 1.0), torch.tensor([0])).backward()
    # d/dz_j of -z_0 + log(sum_j w_j e^z_j) with constant w: softmax of (z + log w) minus the one-hot target
    shifted = torch.tensor([2.0, 1.0 + math.log(2 * math.e / (math.e + 1)), math.log(2 / (math.e + 1))])
    expected = torch.softmax(shifted.double(), 0) - torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(logits.grad[0], expected)


def test_align_and_uniform_regularisers_are_added() -> None:
    emb = batch(["cxr", "report"], n=6, d=4, seed=11)
    base = ConvirtLoss(pairs=[("cxr", "report")])(emb, 3.0)["loss"]
    out = ConvirtLoss(pairs=[("cxr", "report")], align_weight=0.5, uniform_weight=0.25)(emb, 3.0)
    unif = (uniformity(emb["cxr"]) + uniformity(emb["report"])) / 2
    torch.testing.assert_close(out["loss"], base + 0.5 * alignment(emb["cxr"], emb["report"]) + 0.25 * unif)
    assert "reg/align/cxr-report" in out and "reg/uniform/cxr-report" in out


def test_logit_scale_gets_a_gradient() -> None:
    emb = batch(["cxr", "report"], n=4, d=3, seed=12)
    log_s = torch.tensor(math.log(14.3), dtype=torch.float64, requires_grad=True)
    ConvirtLoss(pairs=[("cxr", "report")])(emb, log_s.exp())["loss"].backward()
    assert log_s.grad is not None and torch.isfinite(log_s.grad)


def test_bad_inputs_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="lam"):
        ConvirtLoss(lam=1.5)
    with pytest.raises(ValueError, match="pairs"):
        ConvirtLoss(pairs=[("cxr", "cxr")])
    emb = {"cxr": torch.zeros(4, 3), "report": torch.zeros(5, 3)}
    with pytest.raises(MedclrInputError, match="same B and D"):
        ConvirtLoss(pairs=[("cxr", "report")])(emb, 1.0)
    with pytest.raises(MedclrInputError, match="present"):
        ConvirtLoss(pairs=[("cxr", "report")])({"cxr": torch.zeros(4, 3), "report": torch.zeros(4, 3)}, 1.0,
                                               present={"cxr": torch.ones(3, dtype=torch.bool)})
