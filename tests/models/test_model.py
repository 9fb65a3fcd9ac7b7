"""MedClr: 2 and 3 modalities, missing rows, logit-scale clamp, grounding tokens, and a training step."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from medclr.models import LogitScaleConfig, ModelConfig, TowerConfig, build_model
from medclr.models.encoders.cxr import SmallCnnConfig
from medclr.models.encoders.ecg import EcgPatchTransformerConfig
from medclr.models.encoders.report import LoraSettings, TextConfig
from medclr.models.heads import MlpHeadConfig
from medclr.models.model import LogitScale
from medclr.types import Batch

TEXTS = ["No acute process.", "Cardiomegaly.", "No acute process.", "Sinus rhythm, ST elevation in V2."]
ECG = EcgPatchTransformerConfig(patch_size=25, max_length=200, hidden_size=32, mlp_dim=64, num_layers=1, num_heads=4)


def _model(tiny_llama_dir: Path, modalities: tuple[str, ...] = ("cxr", "ecg", "report")) -> torch.nn.Module:
    towers = {
        "cxr": TowerConfig(SmallCnnConfig(channels=(8, 16))),
        "ecg": TowerConfig(ECG, MlpHeadConfig(hidden_dim=32)),
        "report": TowerConfig(TextConfig(model=str(tiny_llama_dir), pooling="last_token",
                                         lora=LoraSettings(r=2, dropout=0.0))),
    }
    torch.manual_seed(0)
    return build_model(ModelConfig(embed_dim=16, towers={m: towers[m] for m in modalities}))


def _batch(present: dict[str, list[bool]] | None = None) -> Batch:
    inputs = {"cxr": torch.randn(4, 1, 32, 32), "ecg": torch.randn(4, 12, 200), "report": list(TEXTS)}
    masks = {m: torch.tensor(p) for m, p in (present or {}).items()}
    return Batch(inputs=inputs, present=masks)


def test_forward_three_and_two_modalities(tiny_llama_dir: Path) -> None:
    out = _model(tiny_llama_dir)(_batch())
    assert set(out) == {"cxr", "ecg", "report"}
    for emb in out.values():
        assert emb.shape == (4, 16)
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(4))
    two = _model(tiny_llama_dir, ("cxr", "report"))
    assert set(two(_batch())) == {"cxr", "report"}  # the batch's ECG has no tower: ignored


def test_missing_rows_are_zero_and_match_the_full_encoding(tiny_llama_dir: Path) -> None:
    model = _model(tiny_llama_dir).eval()
    batch = _batch({"ecg": [True, False, True, False], "report": [False] * 4})
    with torch.no_grad():
        out, full = model(batch), model(_batch())
    assert "report" not in out  # no row has a report
    assert out["ecg"][[1, 3]].abs().sum() == 0
    torch.testing.assert_close(out["ecg"][[0, 2]], model.encode("ecg", batch.inputs["ecg"][[0, 2]]))
    assert full["ecg"].shape == (4, 16)


def test_repeated_texts_are_encoded_once(tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(tiny_llama_dir).eval()
    seen: list[int] = []
    encoder = model.tower("report").encoder
    original = encoder.forward
    monkeypatch.setattr(encoder, "forward", lambda x: seen.append(len(x)) or original(x))
    with torch.no_grad():
        emb = model.encode("report", TEXTS)
    assert seen == [3] and torch.equal(emb[0], emb[2])


def test_encode_tokens_projects_tokens_onto_the_grid(tiny_llama_dir: Path) -> None:
    model = _model(tiny_llama_dir)
    out = model.encode_tokens("ecg", torch.randn(2, 12, 100))
    assert out.tokens.shape == (2, 12 * 4, 16) and out.grid == (12, 4)
    torch.testing.assert_close(out.tokens.norm(dim=-1), torch.ones(2, 48))
    raw = model.encode_tokens("cxr", torch.randn(2, 1, 32, 32), normalize=False)
    assert raw.token_map().shape == (2, 8, 8, 16)
    with pytest.raises(KeyError, match="no 'labs' tower"):
        model.encode("labs", torch.zeros(1, 3))


def test_logit_scale_is_learned_in_log_space_and_clamped() -> None:
    scale = LogitScale(init=14.0, max_value=100.0)
    assert scale().item() == pytest.approx(14.0)
    with torch.no_grad():
        scale.log_scale.fill_(math.log(5000.0))
    assert scale().item() == pytest.approx(100.0)
    scale().backward()
    assert scale.log_scale.grad.item() == 0.0  # above the cap: no push further up
    symile = LogitScale(init=128.0, max_value=1000.0)  # Symile: start near d
    assert symile().item() == pytest.approx(128.0)
    with pytest.raises(ValueError):
        LogitScale(init=200.0, max_value=100.0)
    fixed = build_model(ModelConfig(embed_dim=8, towers={"cxr": TowerConfig(SmallCnnConfig(channels=(4,)))},
                                    logit_scale=LogitScaleConfig(init=10.0, learnable=False)))
    assert not fixed.scale.log_scale.requires_grad


def test_gradient_step_changes_only_trainable_parameters(tiny_llama_dir: Path) -> None:
    model = _model(tiny_llama_dir).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    for _ in range(2):  # LoRA's A gets gradient only once B has moved off zero
        emb = model(_batch())
        logits = model.logit_scale * emb["cxr"] @ emb["report"].T + model.logit_scale * emb["ecg"] @ emb["report"].T
        loss = F.cross_entropy(logits, torch.arange(4))
        optim.zero_grad()
        loss.backward()
        optim.step()
    for name, p in model.named_parameters():
        moved = not torch.equal(p.detach(), before[name])
        if not p.requires_grad:
            assert not moved, f"frozen parameter {name} changed"
        elif "norm_cross_attn" not in name:
            assert moved, f"trainable parameter {name} did not change"
    trainable, total = model.trainable_share()
    assert 0 < trainable < total
