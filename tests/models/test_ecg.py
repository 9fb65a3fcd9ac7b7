"""ECG towers: shapes, the lead x time token grid, length checks, and the input scaling."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from medclr.models.encoders.ecg import (
    EcgEncoderConfig,
    EcgNorm,
    EcgPatchTransformerConfig,
    EcgResNetConfig,
    EcgScale,
)
from tests.models.helpers import positive_constant_kernels

PATCH = {"patch_size": 25, "max_length": 1000, "hidden_size": 32, "mlp_dim": 64, "num_layers": 2, "num_heads": 4}


def test_resnet1d_shapes() -> None:
    enc = EcgResNetConfig(widths=(8, 16, 16, 32)).build()
    out = enc(torch.randn(3, 12, 1024))
    assert out.pooled.shape == (3, 32) and out.tokens.shape == (3, 32, 32)
    assert out.grid == (32,) and out.grid_axes == ("time",) and out.token_stride == (32,)


@pytest.mark.parametrize("length", [1000, 500, 75])
def test_patch_transformer_tokens_are_lead_by_time(length: int) -> None:
    enc = EcgPatchTransformerConfig(**PATCH).build()
    out = enc(torch.randn(2, 12, length))
    n = length // 25
    assert out.tokens.shape == (2, 12 * n, 32) and out.pooled.shape == (2, 32)
    assert out.grid == (12, n) and out.grid_axes == ("lead", "time")
    assert out.token_stride == (1, 25) and out.input_size == (12, length)


def test_patch_transformer_grid_is_lead_major() -> None:
    """Token (lead l, patch j) sees only samples j*P..(j+1)*P of lead l (with no blocks mixing tokens)."""
    enc = EcgPatchTransformerConfig(**{**PATCH, "num_layers": 0}).build().eval()
    x = torch.zeros(1, 12, 200)
    base = enc(x).token_map()  # [1, 12, 8, D]
    x[0, 7, 50:75] = 1.0  # lead V2 (index 7), patch 2
    changed = (enc(x).token_map() - base).abs().sum(-1)[0] > 1e-6
    assert changed.nonzero().tolist() == [[7, 2]]


def test_patch_transformer_rejects_bad_lengths() -> None:
    enc = EcgPatchTransformerConfig(**PATCH).build()
    with pytest.raises(ValueError, match="not divisible by the patch size 25"):
        enc(torch.randn(1, 12, 1010))
    with pytest.raises(ValueError, match="exceeds max_length 1000"):
        enc(torch.randn(1, 12, 1025))
    with pytest.raises(ValueError, match=r"\[B, 12, T\]"):
        enc(torch.randn(1, 8, 1000))


@pytest.mark.parametrize("cfg", [EcgResNetConfig(widths=(4, 4, 8, 8)), EcgPatchTransformerConfig(**PATCH)])
def test_every_trainable_parameter_gets_a_gradient(cfg: object) -> None:
    enc = cfg.build()  # type: ignore[attr-defined]
    enc(torch.randn(2, 12, 200)).pooled.sum().backward()
    assert [n for n, p in enc.named_parameters() if p.requires_grad and p.grad is None] == []


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    plain = EcgPatchTransformerConfig(**PATCH).build()
    ckpt = EcgPatchTransformerConfig(**PATCH, gradient_checkpointing=True).build()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 12, 100)
    for enc in (plain, ckpt):
        enc(x).pooled.square().sum().backward()
    torch.testing.assert_close(ckpt.patch_embed.weight.grad, plain.patch_embed.weight.grad)


SCALED: list[EcgEncoderConfig] = [EcgResNetConfig(widths=(4, 4, 8, 8)), EcgPatchTransformerConfig(**PATCH)]


@pytest.mark.parametrize("cfg", SCALED, ids=["resnet1d", "patch_transformer"])
def test_input_scaling_is_applied_inside_the_tower(cfg: EcgEncoderConfig) -> None:
    """With input_norm the tower sees (x - lead median) / scale_mv: the raw tower fed that signal agrees."""
    torch.manual_seed(0)
    raw = dataclasses.replace(cfg, input_norm=None).build().eval()
    scaled = dataclasses.replace(cfg, input_norm=EcgNorm(scale_mv=0.25)).build().eval()
    assert set(scaled.state_dict()) == set(raw.state_dict())  # no new weights or buffers: old checkpoints load
    scaled.load_state_dict(raw.state_dict())
    x = torch.randn(2, 12, 200) * 0.3 + torch.randn(2, 12, 1)  # mV, with per-lead offsets
    expected = raw((x - x.median(dim=-1, keepdim=True).values) / 0.25).pooled
    torch.testing.assert_close(scaled(x).pooled, expected)


def test_scaling_removes_lead_offsets_and_keeps_amplitude() -> None:
    torch.manual_seed(0)
    enc = EcgPatchTransformerConfig(**PATCH, input_norm=EcgNorm()).build().eval()
    x = torch.randn(2, 12, 200) * 0.2
    offset = torch.randn(1, 12, 1)  # a DC offset per lead (electrode potential), not a finding
    with torch.no_grad():
        base = enc(x).pooled
        torch.testing.assert_close(enc(x + offset).pooled, base, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(enc(2 * x).pooled, base, atol=1e-3)  # high voltage (e.g. LVH) stays visible
    torch.testing.assert_close(EcgScale("none", 0.5)(x + offset), (x + offset) / 0.5)  # center: none keeps them


def test_scaling_is_deterministic_and_needs_no_median_indices() -> None:
    """A stable sort gives torch.median's (lower) median without its index output, which deterministic CUDA
    rejects; even and odd lengths."""
    for t in (200, 75):
        x = torch.randn(3, 12, t)
        torch.testing.assert_close(EcgScale("median", 1.0)(x), x - x.median(dim=-1, keepdim=True).values)


def test_input_norm_config_defaults_and_checks() -> None:
    from medclr.models.config import MedclrConfigError, from_dict

    assert from_dict(EcgResNetConfig, {}).input_norm is None  # a model.yaml from before the field: raw mV
    assert from_dict(EcgPatchTransformerConfig, {"input_norm": {}}).input_norm == EcgNorm("median", 0.2)
    with pytest.raises(MedclrConfigError, match=r"input_norm\.scale_mv: must be > 0"):
        from_dict(EcgResNetConfig, {"input_norm": {"scale_mv": -1}})
    with pytest.raises(MedclrConfigError, match="is not one of"):
        from_dict(EcgResNetConfig, {"input_norm": {"center": "mean"}})


def test_resnet_token_centres_are_the_receptive_field_centres() -> None:
    """The 1-D ResNet records where its time cells are centred (0.5 + i * stride; see the X-ray test of the rule):
    with positive constant kernels and no max-pool the input gradient of a middle cell is centred exactly there."""
    enc = EcgResNetConfig(widths=(4, 4, 8, 8), max_pool=False).build()
    positive_constant_kernels(enc)
    x = torch.ones(1, 12, 512, requires_grad=True)
    out = enc(x)
    middle = out.grid[0] // 2
    out.tokens[0, middle].sum().backward()
    grad = x.grad[0].sum(0)
    measured = float((grad * (torch.arange(512) + 0.5)).sum() / grad.sum())
    assert out.token_centre == (0.5,) and measured == pytest.approx(0.5 + middle * out.token_stride[0], abs=1e-3)
