"""AdamW parameter groups, the warmup + cosine schedule, and the global-batch sampler."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from medclr.config import OptimConfig
from medclr.models import LogitScale, MedClr, Tower
from medclr.models.encoders.base import Encoder
from medclr.train.optim import WarmupCosine, build_optimizer, param_groups
from medclr.train.sampler import EpochBatches, GlobalBatchSampler


class _Enc(Encoder):
    def __init__(self) -> None:
        super().__init__()
        self.out_dim = 4
        self.conv = nn.Conv1d(2, 4, 3)
        self.norm = nn.LayerNorm(4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def _model() -> MedClr:
    towers = {"cxr": Tower(_Enc(), nn.Linear(4, 8)), "report": Tower(_Enc(), nn.Linear(4, 8, bias=True))}
    return MedClr(towers, 8, LogitScale(14.0, 100.0))


def test_no_decay_on_norms_biases_tokens_and_logit_scale_and_frozen_params_left_out() -> None:
    groups = {g["name"]: g for g in param_groups(_model(), OptimConfig(weight_decay=0.1, tower_lr={"report": 0.1}))}
    decayed = {n for g in groups.values() if g["weight_decay"] > 0 for n in g["param_names"]}
    plain = {n for g in groups.values() if g["weight_decay"] == 0 for n in g["param_names"]}
    assert decayed == {"towers.cxr.encoder.conv.weight", "towers.cxr.head.weight",
                       "towers.report.encoder.conv.weight", "towers.report.head.weight"}
    assert {"scale.log_scale", "towers.cxr.encoder.norm.weight", "towers.cxr.encoder.conv.bias",
            "towers.cxr.encoder.cls_token", "towers.report.head.bias"} <= plain
    assert not any("frozen" in n for n in decayed | plain)
    assert groups["report/decay"]["lr"] == pytest.approx(0.1 * OptimConfig().lr)
    optimizer = build_optimizer(_model(), OptimConfig())
    assert all("param_names" not in g for g in optimizer.param_groups)


def test_warmup_then_cosine_to_the_floor() -> None:
    f = WarmupCosine(warmup=10, total=110, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    assert WarmupCosine(0, 10, "constant")(7) == 1.0
    values = [f(t) for t in range(10, 110)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert math.isclose(max(values), 1.0)


def test_ranks_split_the_same_global_batches_and_resume_mid_epoch() -> None:
    one = GlobalBatchSampler(10, 4, seed=3)
    r0, r1 = (GlobalBatchSampler(10, 4, seed=3, rank=r, world=2) for r in (0, 1))
    for s in (one, r0, r1):
        s.set_epoch(2)
    whole = list(one)
    assert len(whole) == 2 and all(len(b) == 4 for b in whole)
    assert [a + b for a, b in zip(r0, r1, strict=True)] == whole
    one.set_epoch(2, start=1)
    assert list(one) == whole[1:]
    one.set_epoch(3)
    assert list(one) != whole
    with pytest.raises(ValueError, match="divisible"):
        GlobalBatchSampler(10, 5, seed=0, world=2)


def test_epoch_batches_run_on_across_epochs_tagging_each_index_with_its_epoch() -> None:
    sampler = GlobalBatchSampler(10, 4, seed=3)
    expected = []
    for epoch, start in ((2, 1), (3, 0), (4, 0)):
        sampler.set_epoch(epoch, start)
        expected += [[(epoch, i) for i in batch] for batch in sampler]
    stream = EpochBatches(GlobalBatchSampler(10, 4, seed=3), epoch=2, start=1)
    assert list(itertools.islice(stream, len(expected))) == expected  # 1 + 2 + 2 batches: epochs 2, 3, 4
