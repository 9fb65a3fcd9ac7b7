"""Cross-batch memory (XBM) in ConvirtLoss: against the loop reference, exclusions, FIFO, warm-up, modes."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from medclr.losses import ConvirtLoss
from medclr.losses.memory import EXCLUDED, CrossBatchMemory, Remembered, with_memory
from medclr.models.config import MedclrConfigError
from medclr.train.parts import build_loss
from tests.losses import reference as ref
from tests.losses.helpers import batch, unit

PAIRS = [("cxr", "report"), ("ecg", "report")]


def test_worked_example_one_remembered_negative() -> None:
    """N = 1 has no in-batch negative (loss 0 without memory); one remembered b' at cosine 0.6 with s = 10 gives
    the a->b row log(1 + e^(6 - 10)) = 0.01815, and b->a meets the remembered a' = [0, 1] at cosine 0."""
    loss = ConvirtLoss(pairs=[("a", "b")], lam=0.75, memory_size=4)
    first = {"a": torch.tensor([[0.0, 1.0]]), "b": torch.tensor([[0.6, 0.8]])}
    assert loss(first, 10.0)["loss"].item() == pytest.approx(0.0, abs=1e-6)  # memory empty on the first call
    second = {"a": torch.tensor([[1.0, 0.0]]), "b": torch.tensor([[1.0, 0.0]])}
    a_to_b, b_to_a = math.log(1 + math.exp(6 - 10)), math.log(1 + math.exp(0 - 10))
    assert loss(second, 10.0)["loss"].item() == pytest.approx(0.75 * a_to_b + 0.25 * b_to_a, rel=1e-5)


@pytest.mark.parametrize("lam", [0.75, 0.5])
def test_matches_loop_reference_with_the_previous_batches_as_negatives(lam: float) -> None:
    loss = ConvirtLoss(pairs=PAIRS, lam=lam, memory_size=10)
    s = torch.tensor(4.2, dtype=torch.float64)
    calls = [batch(["cxr", "ecg", "report"], n=6, d=5, seed=seed) for seed in (1, 2, 3)]
    for emb in calls[:2]:
        loss(emb, s)
    # the memory holds the last 10 rows of each queue: batch 1's last 4 rows, then batch 2's 6
    memory = {f"{a}-{b}/{m}": (torch.cat([calls[0][m][2:], calls[1][m]]), None) for a, b in PAIRS for m in (a, b)}
    out = loss(calls[2], s)
    assert out["loss"].item() == pytest.approx(ref.convirt(calls[2], PAIRS, lam, 4.2, memory=memory), rel=1e-10)
    assert len(loss.memory) == 10


def test_a_remembered_copy_of_the_query_s_own_report_is_no_negative() -> None:
    loss = ConvirtLoss(pairs=[("cxr", "report")], memory_size=8)
    s = torch.tensor(6.0, dtype=torch.float64)
    old, new = batch(["cxr", "report"], n=4, d=5, seed=5), batch(["cxr", "report"], n=4, d=5, seed=6)
    old_ids, new_ids = torch.tensor([10, 11, 12, 13]), torch.tensor([20, 11, 21, 22])  # row 1's report again
    loss(old, s, groups={"report": old_ids})
    out = loss(new, s, groups={"report": new_ids})
    memory = {f"cxr-report/{m}": (old[m], old_ids.tolist()) for m in ("cxr", "report")}
    expected = ref.convirt(new, [("cxr", "report")], 0.75, 6.0, groups={"report": new_ids.tolist()}, memory=memory)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-10)
    unexcluded = ref.convirt(new, [("cxr", "report")], 0.75, 6.0, groups={"report": new_ids.tolist()},
                             memory={k: (v[0], None) for k, v in memory.items()})
    assert abs(expected - unexcluded) > 1e-3  # the exclusion changes the loss: the test can fail


def test_memory_rows_carry_no_gradient_and_the_batch_keeps_its_own() -> None:
    loss = ConvirtLoss(pairs=[("cxr", "report")], memory_size=8)
    loss(batch(["cxr", "report"], n=4, d=5, seed=7), 5.0)
    emb = {m: x.clone().requires_grad_(True) for m, x in batch(["cxr", "report"], n=4, d=5, seed=8).items()}
    loss(emb, 5.0)["loss"].backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in emb.values())
    assert not any(q.requires_grad for q in loss.memory._emb.values())


def test_eval_mode_neither_reads_nor_fills_the_memory() -> None:
    emb1, emb2 = batch(["cxr", "report"], n=5, d=4, seed=9), batch(["cxr", "report"], n=5, d=4, seed=10)
    plain = ConvirtLoss(pairs=[("cxr", "report")])
    loss = ConvirtLoss(pairs=[("cxr", "report")], memory_size=16)
    loss(emb1, 3.0)
    loss.eval()
    assert loss(emb2, 3.0)["loss"].item() == pytest.approx(plain(emb2, 3.0)["loss"].item(), rel=1e-12)
    assert len(loss.memory) == 5 and loss.memory.calls == 1


def test_warm_up_uses_the_memory_only_from_call_start_on() -> None:
    emb = [batch(["cxr", "report"], n=5, d=4, seed=s) for s in range(11, 14)]
    plain = ConvirtLoss(pairs=[("cxr", "report")])
    loss = ConvirtLoss(pairs=[("cxr", "report")], memory_size=16, memory_start=2)
    for x in emb[:2]:  # calls 0 and 1: no memory negatives, but the memory fills
        assert loss(x, 3.0)["loss"].item() == pytest.approx(plain(x, 3.0)["loss"].item(), rel=1e-12)
    assert loss(emb[2], 3.0)["loss"].item() > plain(emb[2], 3.0)["loss"].item()  # more negatives, larger loss


def test_fifo_keeps_the_newest_rows_and_a_new_width_starts_afresh() -> None:
    memory = CrossBatchMemory(size=5, start=0)
    for k in range(3):
        memory.push("x", torch.full((3, 2), float(k)), torch.tensor([k, k, k]))
        memory.tick()
    kept = memory.negatives("x", torch.zeros(1, 2))
    assert kept is not None
    assert kept.emb[:, 0].tolist() == [1.0, 1.0, 2.0, 2.0, 2.0] and kept.ids.tolist() == [1, 1, 2, 2, 2]
    memory.push("x", torch.ones(2, 7), None)  # another model's width (medclr's probe call, say)
    assert len(memory) == 2 and memory.calls == 0
    assert memory.negatives("x", torch.zeros(1, 2)) is None  # asked at the old width: nothing


def test_with_memory_excludes_only_known_equal_ids() -> None:
    rows = Remembered(torch.eye(3, dtype=torch.float64), torch.tensor([7, 7, 8]), torch.tensor([True, False, True]))
    query = unit(2, 3, seed=0)
    out = with_memory(torch.zeros(2, 2, dtype=torch.float64), query, torch.tensor(2.0, dtype=torch.float64), rows,
                      torch.tensor([7, 9]))
    assert out.shape == (2, 5)
    assert out[0, 2].item() == EXCLUDED  # known id 7 = query 0's
    assert out[0, 3].item() == pytest.approx(2.0 * query[0, 1].item())  # id 7 but unknown: a negative
    assert out[1, 2:].tolist() == pytest.approx((2.0 * query[1]).tolist())


def test_config_builds_it_and_rejects_bad_sizes() -> None:
    def config(**kwargs: int) -> SimpleNamespace:
        return SimpleNamespace(loss=SimpleNamespace(name="convirt", kwargs=kwargs))

    loss = build_loss(config(memory_size=64, memory_start=100))  # type: ignore[arg-type]
    assert isinstance(loss, ConvirtLoss) and (loss.memory.size, loss.memory.start) == (64, 100)
    assert "memory_size=64" in repr(loss)
    with pytest.raises(MedclrConfigError, match="memory_size"):
        build_loss(config(memory_size=-1))  # type: ignore[arg-type]


def test_memory_modalities_remember_only_the_named_tower() -> None:
    """``memory_modalities=[report]``: X-ray queries meet remembered reports; report queries only this batch."""
    loss = ConvirtLoss(pairs=[("cxr", "report")], memory_size=6, memory_modalities=["report"])
    s = torch.tensor(5.0, dtype=torch.float64)
    old, new = batch(["cxr", "report"], n=4, d=5, seed=14), batch(["cxr", "report"], n=4, d=5, seed=15)
    loss(old, s)
    out = loss(new, s)
    memory = {"cxr-report/report": (old["report"], None)}
    assert out["loss"].item() == pytest.approx(ref.convirt(new, [("cxr", "report")], 0.75, 5.0, memory=memory),
                                               rel=1e-10)
    assert "cxr-report/cxr" not in loss.memory._emb and "memory_modalities=['report']" in repr(loss)
