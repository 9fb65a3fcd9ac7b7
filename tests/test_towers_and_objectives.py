"""Issue 5's end-to-end check: every objective trains the three real towers together on a synthetic batch.

The towers are those of ``configs/models/tiny.yaml`` (MONAI-style stride-2 CNN for X-rays, a 1-D ResNet for
ECGs, the offline pretrained MiniLM for reports). The batch is rendered by the synthetic world's own renderers,
so the three modalities share findings; a few optimisation steps on that batch must lower each loss, and the
gradients must reach every tower.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medclr.losses import LOSSES
from medclr.models.factory import build_model, load_model_config
from medclr.synth.latent import sample_patient, sample_study
from medclr.synth.world import PRESETS
from medclr.types import Batch

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "models" / "tiny.yaml"
B = 8


@pytest.fixture(scope="module")
def batch() -> Batch:
    """B studies rendered by the world's renderers: X-rays at 64 px, ECGs at 100 Hz, reports."""
    from medclr.synth.cxr import render_cxr
    from medclr.synth.ecg import simulate_ecg
    from medclr.synth.reports import radiology_report

    rng = np.random.default_rng(0)
    images, signals, reports = [], [], []
    for i in range(B):
        study = sample_study(rng, sample_patient(rng, i, "mimic"), 0, 0.0, PRESETS["tiny"].cxr_sizes)
        image, _ = render_cxr(study.state.cxr, study.state.acquisition, rng)
        small = torch.nn.functional.interpolate(torch.from_numpy(image)[None, None], size=(64, 64), mode="area")
        images.append(small[0])  # [1, 64, 64]
        signals.append(torch.from_numpy(simulate_ecg(study.state.ecg, rng, fs=100.0)))  # [12, 1000]
        reports.append(radiology_report(study.state, rng))
    return Batch(inputs={"cxr": torch.stack(images), "ecg": torch.stack(signals), "report": reports}, present={})


@pytest.mark.parametrize("loss_name", ["convirt", "symile", "gram"])
def test_each_objective_trains_the_three_towers(batch: Batch, loss_name: str) -> None:
    torch.manual_seed(0)
    model = build_model(load_model_config(CONFIG))
    kwargs = {"convirt": {"pairs": [("cxr", "report"), ("ecg", "report"), ("cxr", "ecg")]}}.get(loss_name, {})
    loss_fn = LOSSES.get(loss_name)(**kwargs)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=3e-3)
    losses = []
    for step in range(5):
        out = loss_fn(model(batch), model.logit_scale)
        optimizer.zero_grad()
        out["loss"].backward()
        if step == 0:
            for modality in ("cxr", "ecg", "report"):
                grads = [p.grad for p in model.tower(modality).parameters() if p.requires_grad]
                assert any(g is not None and g.abs().sum() > 0 for g in grads), f"no gradient reaches {modality}"
        optimizer.step()
        losses.append(float(out["loss"].detach()))
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0], (loss_name, losses)


def test_local_word_region_term_trains_through_the_token_grids(batch: Batch) -> None:
    """ConVIRT + GLoRIA's local term through ContrastiveStep: token grids reach the loss, missing X-rays are
    zero rows left out of the local term, and the local loss falls."""
    from medclr.train.parts import ContrastiveStep

    torch.manual_seed(0)
    model = build_model(load_model_config(CONFIG))
    present = torch.ones(B, dtype=torch.bool)
    present[2] = False
    partial = Batch(inputs=batch.inputs, present={"cxr": present})
    emb, grids = model.encode_batch(partial, ("cxr", "report"))
    assert set(grids) == {"cxr", "report"} and set(emb) == {"cxr", "ecg", "report"}
    cxr = grids["cxr"]
    assert cxr.tokens is not None and cxr.token_mask is not None and cxr.tokens.shape[:2] == cxr.token_mask.shape
    assert float(cxr.tokens[2].abs().sum()) == 0.0 and not bool(cxr.token_mask[2].any())
    torch.testing.assert_close(emb["cxr"], model(partial)["cxr"])  # the same embeddings as forward
    step = ContrastiveStep(model, LOSSES.get("convirt")(local_weight=1.0), ["cxr", "ecg", "report"], False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    local = []
    for _ in range(5):
        out = step(partial)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        local.append(float(out["loss/local/cxr->report"]))
    assert int(out["n/local/cxr-report"]) == B - 1
    assert local[-1] < local[0], local
