"""X-ray towers: shapes and grids for every option, and pretrained loading with key mapping from local files."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from medclr.errors import MedclrInputError
from medclr.eval.grounding_maps import TokenLayout
from medclr.models.config import MedclrConfigError
from medclr.models.encoders.cxr import (
    BinomialBlur,
    CxrEncoderConfig,
    DenseNetConfig,
    ImageNorm,
    ResNetConfig,
    SmallCnnConfig,
    ViTConfig,
    gem_tokens,
    keep_random_tokens,
    pixel_coordinates,
)
from tests.models.helpers import positive_constant_kernels

VIT = {"image_size": 64, "patch_size": 16, "hidden_size": 32, "mlp_dim": 64, "num_layers": 2, "num_heads": 4}


@pytest.mark.parametrize(
    ("cfg", "size", "grid", "dim"),
    [
        (ViTConfig(**VIT), (64, 64), (4, 4), 32),
        (ViTConfig(**VIT, pooling="mean"), (96, 48), (6, 3), 32),  # another size: position table resampled
        (DenseNetConfig(init_features=8, growth_rate=4, block_config=(1, 1, 1, 1)), (64, 64), (2, 2), 8),
        (ResNetConfig(depth=10, widths=(8, 8, 16, 16)), (64, 64), (2, 2), 16),
        (ResNetConfig(depth=50, widths=(4, 4, 8, 8)), (64, 96), (2, 3), 32),
        (SmallCnnConfig(channels=(8, 16)), (64, 64), (16, 16), 16),
        (SmallCnnConfig(channels=(4, 4, 8, 8), convs_per_stage=2, output_stride=4), (64, 64), (16, 16), 8),  # atrous
        (SmallCnnConfig(channels=(8, 16), coord_channels=True), (64, 96), (16, 24), 16),
    ],
)
def test_shapes_and_grid(cfg: object, size: tuple[int, int], grid: tuple[int, int], dim: int) -> None:
    enc = cfg.build()  # type: ignore[attr-defined]
    out = enc(torch.randn(2, 1, *size))
    assert enc.out_dim == dim
    assert out.pooled.shape == (2, dim)
    assert out.tokens.shape == (2, grid[0] * grid[1], dim)
    assert out.grid == grid and out.grid_axes == ("row", "col") and out.input_size == size
    assert (out.grid[0] * out.token_stride[0], out.grid[1] * out.token_stride[1]) == size


@pytest.mark.parametrize(
    "cfg",
    [ViTConfig(**VIT), ViTConfig(**VIT, pooling="mean", gradient_checkpointing=True),
     DenseNetConfig(init_features=8, growth_rate=4, block_config=(1, 1)), ResNetConfig(depth=10, widths=(4, 4, 8, 8)),
     SmallCnnConfig(channels=(4, 8))],
    ids=["vit", "vit_mean_ckpt", "densenet", "resnet", "cnn"],
)
def test_every_trainable_parameter_gets_a_gradient(cfg: object) -> None:
    """No unused trainable parameters: DistributedDataParallel needs none (find_unused_parameters=False)."""
    enc = cfg.build()  # type: ignore[attr-defined]
    out = enc(torch.randn(2, 1, 64, 64))
    (out.pooled.sum() + out.tokens.sum()).backward()
    assert [n for n, p in enc.named_parameters() if p.requires_grad and p.grad is None] == []


def test_small_cnn_output_stride_dilates_instead_of_striding() -> None:
    """DeepLab's atrous conversion: with output_stride 4 a 4-stage CNN keeps a 4x finer grid and the same receptive
    field (a pixel influences tokens as far away as before, in pixels), and its weights load into the
    strided CNN unchanged (same parameter shapes)."""
    strided = SmallCnnConfig(channels=(4, 4, 8, 8), convs_per_stage=2).build()
    atrous = SmallCnnConfig(channels=(4, 4, 8, 8), convs_per_stage=2, output_stride=4).build()
    atrous.load_state_dict(strided.state_dict())
    convs = [m for m in atrous.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.stride[0], c.dilation[0]) for c in convs] == [(2, 1), (1, 1), (2, 1), (1, 1), (1, 1), (1, 2), (1, 2),
                                                            (1, 4)]

    def receptive_field(enc: torch.nn.Module) -> tuple[int, int]:
        """Rows and columns of input pixels that move the central token (positive kernels: no ReLU clips)."""
        positive_constant_kernels(enc)
        x = (torch.rand(1, 1, 128, 128, generator=torch.Generator().manual_seed(0)) + 0.5).requires_grad_(True)
        out = enc(x)
        h, w = out.grid
        out.tokens[0, (h // 2) * w + w // 2].abs().sum().backward()
        rows, cols = torch.nonzero(x.grad[0, 0]).unbind(1)
        return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)

    out = atrous(torch.zeros(1, 1, 128, 128))
    assert out.grid == (32, 32) and out.token_stride == (4, 4)
    assert receptive_field(atrous) == receptive_field(strided) == (91, 91)  # 1 + sum (k - 1) * dilation * stride
    local = SmallCnnConfig(channels=(4, 4, 8, 8), convs_per_stage=2, output_stride=4, atrous=False).build()
    assert receptive_field(local) == (51, 51)  # no dilation: the last four convolutions add 2 * 4 pixels each


def receptive_field_centre(enc: torch.nn.Module, size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(measured, recorded) input coordinates of the central token's centre. Measured: the centroid of the input
    gradient of that token with every kernel set to a positive constant (no ReLU then clips, and each layer's
    weights are symmetric about their centre, so the gradient is symmetric about the receptive field's centre;
    max-pooling routes it to a random pixel of each window: exact up to noise). Recorded: the output's
    TokenLayout."""
    positive_constant_kernels(enc)
    x = (torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(0)) + 0.5).requires_grad_(True)
    out = enc(x)
    middle = [n // 2 for n in out.grid]
    out.tokens[0, middle[0] * out.grid[1] + middle[1]].sum().backward()
    grad, coords = x.grad[0, 0], torch.arange(size) + 0.5
    measured = tuple(float((grad.sum(1 - axis) * coords).sum() / grad.sum()) for axis in (0, 1))
    layout = TokenLayout.of(out)
    return measured, tuple(layout.centre[a] + middle[a] * layout.stride[a] for a in (0, 1))


@pytest.mark.parametrize(("cfg", "tolerance"), [
    (SmallCnnConfig(channels=(4, 8, 8), convs_per_stage=2), 1e-3),
    (SmallCnnConfig(channels=(4, 8, 8, 8), convs_per_stage=2, output_stride=4), 1e-3),
    (SmallCnnConfig(channels=(4, 8, 8), convs_per_stage=2, antialias=True), 1e-3),
    (ResNetConfig(depth=10, widths=(4, 4, 8, 8), max_pool=False), 1e-3),
    (ResNetConfig(depth=10, widths=(4, 4, 8, 8), conv1_size=4, max_pool=False), 1e-3),  # even kernel: 1/2 earlier
    (ResNetConfig(depth=10, widths=(4, 4, 8, 8)), 1.0),
    (DenseNetConfig(init_features=4, growth_rate=4, block_config=(1, 1, 1)), 1.0),  # average-pooling transitions
], ids=["cnn", "cnn_atrous", "cnn_antialias", "resnet", "resnet_even_conv1", "resnet_maxpool", "densenet"])
def test_recorded_token_centres_are_the_receptive_field_centres(cfg: CxrEncoderConfig, tolerance: float) -> None:
    """Grounding maps lay each token at its recorded centre: a CNN's cell i is centred on input pixel i * stride
    (coordinate 0.5 + i * stride), not at the patch centre (i + 1/2) * stride, 7.5 pixels away at stride 16."""
    measured, recorded = receptive_field_centre(cfg.build(), 128)
    assert measured == pytest.approx(recorded, abs=tolerance)


@pytest.mark.parametrize("coord_channels", [False, True])
def test_coordinate_channels_let_tokens_know_where_they_are(coord_channels: bool) -> None:
    """On a constant image a CNN's interior tokens (those whose receptive field misses the zero padding) are all
    equal: convolutions are translation-equivariant. CoordConv's row/column channels make them differ."""
    enc = SmallCnnConfig(channels=(4, 8), coord_channels=coord_channels).build().eval()
    assert enc.features[0].in_channels == (3 if coord_channels else 1)
    with torch.no_grad():
        out = enc(torch.full((1, 1, 64, 64), 0.7))
    interior = out.token_map()[0, 2:-2, 2:-2].reshape(-1, out.tokens.shape[-1])  # [12 * 12, 8]
    spread = float((interior - interior.mean(0)).abs().max())
    assert (spread > 1e-3) if coord_channels else (spread < 1e-5)


def test_gem_pooling_by_hand_and_its_tokens_mean_is_the_pooled_vector() -> None:
    # one channel, cells {0, 1, 1, 2}: GeM p = 2 is sqrt((0 + 1 + 1 + 4) / 4) = sqrt(1.5); token x' = x^2 / g
    x = torch.tensor([[[[0.0, 1.0], [1.0, 2.0]]]])
    g = 1.5 ** 0.5
    assert torch.allclose(gem_tokens(x, 2.0), torch.tensor([[[[0.0, 1 / g], [1 / g, 4 / g]]]]))
    assert torch.allclose(gem_tokens(x, 1.0), x)  # p = 1: the mean, tokens unchanged
    enc = SmallCnnConfig(channels=(4, 8), gem_p=3.0).build().eval()
    with torch.no_grad():
        out = enc(torch.rand(2, 1, 32, 32))
        fmap = enc.features(enc.standardize(torch.rand(2, 1, 32, 32)))
    assert enc.pools_by_mean and torch.allclose(out.pooled, out.tokens.mean(dim=1), atol=1e-6)  # CAM stays exact
    assert torch.all(gem_tokens(fmap, 3.0).mean(dim=(2, 3)) <= fmap.amax(dim=(2, 3)) + 1e-6)  # between mean and max
    assert torch.all(gem_tokens(fmap, 3.0).mean(dim=(2, 3)) >= fmap.mean(dim=(2, 3)) - 1e-6)
    with pytest.raises(MedclrConfigError, match="gem_p"):
        SmallCnnConfig(gem_p=0.5)


def test_antialiased_cnn_blurs_before_each_strided_convolution_with_a_fixed_filter() -> None:
    plain, blurred = (SmallCnnConfig(channels=(4, 8, 8), antialias=a).build().eval() for a in (False, True))
    assert sum(isinstance(m, BinomialBlur) for m in blurred.features) == 3
    # the filter is fixed and unsaved: the same weights, no new state-dict entries
    assert len(plain.state_dict()) == len(blurred.state_dict())
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in blurred.parameters())
    blur = BinomialBlur(1)
    impulse = torch.zeros(1, 1, 5, 5)
    impulse[0, 0, 2, 2] = 16.0
    assert blur(impulse)[0, 0, 1:4, 1:4].tolist() == [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]
    # a one-pixel line shifted by one pixel: the blurred stride-2 samples change less than the plain ones
    line = torch.zeros(1, 1, 16, 16)
    line[0, 0, 8] = 1.0
    jump = [float((f(line)[..., ::2, :] - f(line.roll(1, dims=2))[..., ::2, :]).abs().max()) for f in
            (torch.nn.Identity(), blur)]
    assert jump[1] < jump[0]


def test_token_keep_hides_random_cells_in_training_only() -> None:
    enc = SmallCnnConfig(channels=(4, 8), token_keep=0.25).build()  # 32 px -> 8 x 8 = 64 cells, 16 kept
    x = torch.rand(3, 1, 32, 32)
    torch.manual_seed(0)
    out = enc.train()(x)
    assert out.tokens is not None and out.tokens.shape == (3, 16, 8) and out.grid is None
    assert torch.allclose(out.pooled, out.tokens.mean(dim=1), atol=1e-6)
    full = enc.eval()(x)  # evaluation sees every cell, on the grid
    assert full.tokens is not None and full.tokens.shape == (3, 64, 8) and full.grid == (8, 8)
    # the kept cells are distinct cells of each image's own grid
    grid = torch.arange(12.0).reshape(1, 12, 1).expand(2, 12, 1)  # cell i holds the value i
    kept = keep_random_tokens(dataclasses.replace(full, tokens=grid, pooled=grid.mean(1)), 0.5).tokens
    assert kept is not None and kept.shape == (2, 6, 1)
    assert all(len(set(row.flatten().tolist())) == 6 for row in kept)
    torch.manual_seed(1)
    picks = {tuple(sorted(keep_random_tokens(dataclasses.replace(full, tokens=grid[:1], pooled=grid[:1, 0]),
                                              0.5).tokens.flatten().tolist())) for _ in range(5)}
    assert len(picks) > 1  # drawn afresh each call
    with pytest.raises(MedclrConfigError, match="token_keep"):
        SmallCnnConfig(token_keep=0.0)


def test_pixel_coordinates_run_from_minus_one_to_one() -> None:
    coords = pixel_coordinates(torch.zeros(2, 1, 3, 5))
    assert coords.shape == (2, 2, 3, 5)
    assert coords[0, 0, :, 0].tolist() == [-1.0, 0.0, 1.0]  # rows, top to bottom
    assert coords[1, 1, 0].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]  # columns, left to right


def test_small_cnn_output_stride_must_be_a_power_of_two() -> None:
    with pytest.raises(MedclrConfigError, match="output_stride: must be a power of 2"):
        SmallCnnConfig(output_stride=6)


def test_vit_patch_grid_is_row_major() -> None:
    """Token (i, j) depends on pixels of patch (i, j) only (with no blocks mixing tokens)."""
    enc = ViTConfig(**{**VIT, "num_layers": 0}).build().eval()
    x = torch.zeros(1, 1, 64, 64)
    base = enc(x).token_map()
    x[0, 0, 16:32, 48:64] = 1.0  # patch row 1, column 3
    changed = (enc(x).token_map() - base).abs().sum(-1)[0] > 1e-6  # [4, 4]
    assert changed.nonzero().tolist() == [[1, 3]]


def test_rejects_wrong_shapes() -> None:
    enc = ViTConfig(**VIT).build()
    with pytest.raises(ValueError, match="divisible by the patch size 16"):
        enc(torch.randn(1, 1, 60, 64))
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        enc(torch.randn(1, 3, 64, 64))


def _timm_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our (MONAI) ViT weights under timm's names: RGB patch embedding, [CLS] position inside pos_embed."""
    rules = [(r"^patch_embedding\.patch_embeddings\.", "patch_embed.proj."), (r"\.attn\.out_proj\.", ".attn.proj."),
             (r"\.mlp\.linear1\.", ".mlp.fc1."), (r"\.mlp\.linear2\.", ".mlp.fc2.")]
    out = {}
    for key, value in sd.items():
        if "norm_cross_attn" in key:
            continue
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value.clone()
    cls_pos = torch.randn(1, 1, out["cls_token"].shape[-1])
    out["pos_embed"] = torch.cat([cls_pos, out.pop("patch_embedding.position_embeddings")], dim=1)
    out["cls_token"] = out["cls_token"] - cls_pos
    out["patch_embed.proj.weight"] = out["patch_embed.proj.weight"].repeat(1, 3, 1, 1) / 3  # grey = R = G = B
    out["head.weight"] = torch.randn(10, out["cls_token"].shape[-1])  # a classifier we must ignore
    return out


def test_vit_loads_timm_checkpoint_with_prefix_and_rgb_stem(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = ViTConfig(**VIT).build().eval()
    x = torch.randn(2, 1, 64, 64)
    sd = {f"module.{k}": v for k, v in _timm_state_dict(source.state_dict()).items()}  # a DDP-saved file
    save_file(sd, str(tmp_path / "vit.safetensors"))
    target = ViTConfig(**VIT, pretrained=str(tmp_path / "vit.safetensors")).build().eval()
    torch.testing.assert_close(target(x).pooled, source(x).pooled, atol=1e-5, rtol=1e-5)
    report = target.load_pretrained(tmp_path / "vit.safetensors")
    assert report.unexpected == ["head.weight"]
    assert all("norm_cross_attn" in k for k in report.missing)


def test_vit_loads_monai_vit_state_dict_and_resizes_positions(tmp_path: Path) -> None:
    from monai.networks.nets import ViT

    monai_vit = ViT(in_channels=1, img_size=(32, 32), patch_size=16, hidden_size=32, mlp_dim=64, num_layers=2,
                    num_heads=4, classification=True, spatial_dims=2)
    torch.save({"state_dict": monai_vit.state_dict(), "epoch": 3}, tmp_path / "monai_vit.pt")
    enc = ViTConfig(**{**VIT, "qkv_bias": False}).build()  # 64 px: a 4 x 4 grid from the 2 x 2 table
    report = enc.load_pretrained(tmp_path / "monai_vit.pt", strict=True)
    assert "blocks.1.attn.qkv.weight" in report.loaded and report.unexpected == ["classification_head.0.weight",
                                                                                   "classification_head.0.bias"]
    torch.testing.assert_close(enc.blocks[1].attn.qkv.weight, monai_vit.blocks[1].attn.qkv.weight)
    assert enc.patch_embedding.position_embeddings.shape == (1, 16, 32)


def test_densenet_loads_torchvision_names(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = DenseNetConfig(init_features=8, growth_rate=4, block_config=(2, 2))
    source = cfg.build().eval()
    tv = {re.sub(r"\.layers\.(norm|conv)(\d)", r".\1.\2", f"features.{k}" if not k.startswith("features") else k): v
          for k, v in source.state_dict().items()}  # torchvision's old names: denselayer1.norm.1
    tv["features.conv0.weight"] = tv["features.conv0.weight"].repeat(1, 3, 1, 1) / 3
    torch.save(tv, tmp_path / "densenet.pth")
    target = DenseNetConfig(init_features=8, growth_rate=4, block_config=(2, 2),
                            pretrained=str(tmp_path)).build().eval()  # a folder with one weights file
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(target(x).pooled, source(x).pooled, atol=1e-5, rtol=1e-5)


def test_resnet_loads_prefixed_checkpoint_and_reports_bad_files(tmp_path: Path) -> None:
    cfg = ResNetConfig(depth=10, widths=(8, 8, 16, 16))
    source = cfg.build()
    torch.save({"model": {f"encoder.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "r.pt")
    report = cfg.build().load_pretrained(tmp_path / "r.pt", strict=True)
    assert not report.missing and not report.unexpected
    torch.save({"x.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(MedclrInputError, match="no weights matched"):
        cfg.build().load_pretrained(tmp_path / "other.pt")
    wrong = ResNetConfig(depth=10, widths=(8, 8, 16, 32)).build()
    with pytest.raises(MedclrInputError, match="do not fit"):
        wrong.load_pretrained(tmp_path / "r.pt")


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    torch.save({"state_dict": SmallCnnConfig()}, tmp_path / "pickle.pt")  # a pickled Python object
    with pytest.raises(MedclrInputError, match="weights-only"):
        SmallCnnConfig(pretrained=str(tmp_path / "pickle.pt")).build()
    with pytest.raises(MedclrInputError, match="not found"):
        SmallCnnConfig(pretrained=str(tmp_path / "missing.pt")).build()


STANDARDIZED: list[CxrEncoderConfig] = [ViTConfig(**VIT),
                                         DenseNetConfig(init_features=8, growth_rate=4, block_config=(1, 1)),
                                         ResNetConfig(depth=10, widths=(4, 4, 8, 8)), SmallCnnConfig(channels=(4, 8))]


@pytest.mark.parametrize("cfg", STANDARDIZED, ids=["vit", "densenet", "resnet", "cnn"])
def test_input_standardization_is_applied_inside_the_tower(cfg: CxrEncoderConfig) -> None:
    """With input_norm the tower sees (x - mean) / std: it equals the raw tower fed standardised pixels."""
    torch.manual_seed(0)
    raw = dataclasses.replace(cfg, input_norm=None).build().eval()
    std = dataclasses.replace(cfg, input_norm=ImageNorm(mean=0.4, std=0.2)).build().eval()
    assert set(std.state_dict()) == set(raw.state_dict())  # no new weights or buffers: old checkpoints load
    std.load_state_dict(raw.state_dict())
    x = torch.rand(2, 1, 64, 64)
    torch.testing.assert_close(std(x).pooled, raw((x - 0.4) / 0.2).pooled)
    assert not torch.allclose(std(x).pooled, raw(x).pooled)


def test_input_norm_config_defaults_and_checks() -> None:
    from medclr.models.config import MedclrConfigError, from_dict

    assert from_dict(ViTConfig, {}).input_norm is None  # a model.yaml from before the field: raw pixels, as trained
    assert from_dict(ViTConfig, {"input_norm": {}}).input_norm == ImageNorm(mean=0.5, std=0.25)
    assert from_dict(SmallCnnConfig, {"input_norm": {"mean": 0.45, "std": 0.2}}).input_norm == ImageNorm(0.45, 0.2)
    assert ViTConfig(input_norm=ImageNorm()).to_dict()["input_norm"] == {"mean": 0.5, "std": 0.25}
    with pytest.raises(MedclrConfigError, match=r"input_norm\.std: must be > 0"):
        from_dict(ViTConfig, {"input_norm": {"std": 0}})
    with pytest.raises(MedclrConfigError, match="unknown key 'scale'"):
        from_dict(ViTConfig, {"input_norm": {"scale": 2}})


def test_standardization_spreads_vit_outputs_at_init() -> None:
    """The reason for the step: at init, raw [0, 1] images give nearly parallel [CLS] outputs."""
    torch.manual_seed(0)
    x = torch.rand(8, 1, 64, 64) * torch.rand(8, 1, 1, 1)  # different brightness and texture per image
    cos = {}
    for norm in (None, ImageNorm()):
        torch.manual_seed(0)
        with torch.no_grad():
            out = torch.nn.functional.normalize(ViTConfig(**VIT, input_norm=norm).build().eval()(x).pooled, dim=-1)
        sim = out @ out.T
        cos[norm is None] = float(sim[~torch.eye(8, dtype=torch.bool)].mean())
    assert cos[False] < cos[True]
