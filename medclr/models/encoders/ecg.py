"""12-lead ECG towers: signals ``[B, 12, T]`` (mV, standard lead order) -> pooled features + tokens.

* ``ecg_resnet1d`` - a 1-D ResNet (He et al., 2016; the 1-D form follows Ribeiro et al., Nat. Commun. 2020) built
  from MONAI's ``ResNet`` with ``spatial_dims=1``: the 12 leads are input channels, so its tokens are time steps
  of the last feature map (grid ``(T',)``) mixing all leads.
* ``ecg_patch_transformer`` - a ViT-style transformer (Dosovitskiy et al., 2021) whose tokens are *lead x time*
  patches: each lead is cut into patches of P samples, every patch is embedded by one shared linear map, and a
  learned lead embedding plus a learned time embedding are added. Tokens are ``[B, 12 * T/P, D]`` on the grid
  ``(12, T/P)`` (lead-major), so a phrase such as "ST elevation in V2-V4" can be grounded on leads and segments.
  Any T divisible by P up to ``max_length`` works (the time table is read from its start, as in BERT).

**Input scaling.** Every ECG tower can first map the signal (mV) to ``(x - baseline) / scale_mv`` (``input_norm:
{center: median, scale_mv: 0.2}``; the configs in ``configs/models`` turn it on, and the field's default, null,
keeps the model.yaml of runs made before it meaning the model they trained). ``baseline`` is each lead's median
over the record (its isoelectric level: most of a cardiac cycle is baseline, so the median ignores QRS and T
waves; this removes DC offsets), and ``scale_mv`` one fixed value (0.2 mV, near the median per-lead standard
deviation after baseline removal: 0.15 in CinC 2021, 0.17 in PTB-XL, 0.18 in the synthetic world). A fixed scale,
not a per-record one, keeps amplitudes comparable between records: high QRS voltage (LVH) or low voltage are
findings. Raw mV values are small (|x| mostly < 1 mV), and at initialisation the patch transformer's outputs for
different ECGs then nearly all look alike (mean cosine 0.96 on the demo tower; 0.79 with the scaling). The step is
deterministic, holds no weights (checkpoints keep their keys) and runs inside the module, so evaluation, the app
and ``load_model`` apply it too.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import Tensor, nn

from medclr.models.config import MedclrConfigError, doc, knob, register_config
from medclr.models.encoders.base import ENCODERS, Encoder, EncoderConfig, resnet_token_centre
from medclr.models.encoders.transformer import make_blocks, run_blocks
from medclr.types import EncoderOutput


def check_signal(x: Tensor, leads: int, multiple: int = 1) -> int:
    """Validate ``x [B, leads, T]`` (T divisible by ``multiple``) and return T."""
    if x.ndim != 3 or x.shape[1] != leads:
        raise ValueError(f"ECG towers take [B, {leads}, T] tensors; got shape {tuple(x.shape)}")
    t = int(x.shape[2])
    if t % multiple:
        raise ValueError(f"ECG length {t} is not divisible by the patch size {multiple}; crop or pad the signal")
    return t


@dataclasses.dataclass
class EcgNorm:
    """ECG input scaling ``(x - baseline) / scale_mv`` (see the module docstring)."""

    center: Literal["median", "none"] = knob("median", "subtract each lead's median over the record (its baseline); "
                                                       "none = keep DC offsets")
    scale_mv: float = knob(0.2, "then divide by this many mV (one value for all leads and records: amplitudes stay "
                                "comparable)")

    def __post_init__(self) -> None:
        if not self.scale_mv > 0:
            raise MedclrConfigError(f"input_norm.scale_mv: must be > 0, got {self.scale_mv}")


class EcgScale(nn.Module):
    """``(x - median_t(x)) / scale_mv`` per lead (or without the median); no parameters or buffers."""

    def __init__(self, center: str, scale_mv: float) -> None:
        super().__init__()
        self.center, self.scale_mv = center, float(scale_mv)

    def forward(self, x: Tensor) -> Tensor:
        if self.center == "median":  # lower median via a stable sort: deterministic on CUDA too (torch.median's
            t = x.shape[-1]  # index output is not), and the same value torch.median returns
            x = x - x.sort(dim=-1, stable=True).values[..., (t - 1) // 2 : (t - 1) // 2 + 1]  # [B, leads, 1]
        return x / self.scale_mv

    def extra_repr(self) -> str:
        return f"center={self.center}, scale_mv={self.scale_mv}"


def input_scaling(norm: EcgNorm | None) -> nn.Module:
    """The tower's first step: :class:`EcgScale` for ``norm``, or the identity when it is None."""
    return nn.Identity() if norm is None else EcgScale(norm.center, norm.scale_mv)


class EcgResNet1d(Encoder):
    """MONAI 1-D ResNet over the 12 leads as channels; tokens are the time cells of the last feature map."""

    pools_by_mean = True  # the mean of the last feature map

    def __init__(self, cfg: EcgResNetConfig) -> None:
        super().__init__()
        from monai.networks.nets import ResNet  # imported when building: monai takes seconds to import

        net = ResNet(block="basic", layers=list(cfg.layers), block_inplanes=list(cfg.widths), spatial_dims=1,
                     n_input_channels=cfg.leads, conv1_t_size=cfg.conv1_size, conv1_t_stride=cfg.conv1_stride,
                     no_max_pool=not cfg.max_pool, feed_forward=False, bias_downsample=False)
        self.conv1, self.bn1, self.act, self.maxpool = net.conv1, net.bn1, net.act, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.use_max_pool, self.leads, self.out_dim = cfg.max_pool, cfg.leads, cfg.widths[-1]
        self.stride = cfg.conv1_stride * (2 if cfg.max_pool else 1) * 8  # layers 2-4 halve the time axis
        self.centre = resnet_token_centre(cfg.conv1_size)
        self.scale = input_scaling(cfg.input_norm)

    def forward(self, x: Tensor) -> EncoderOutput:
        t = check_signal(x, self.leads)
        y = self.act(self.bn1(self.conv1(self.scale(x))))
        if self.use_max_pool:
            y = self.maxpool(y)
        y = self.layer4(self.layer3(self.layer2(self.layer1(y))))  # [B, C, T']
        tokens = y.transpose(1, 2)  # [B, T', C]
        return EncoderOutput(pooled=tokens.mean(dim=1), tokens=tokens, grid=(tokens.shape[1],), grid_axes=("time",),
                             token_stride=(self.stride,), token_centre=(self.centre,), input_size=(t,))


class EcgPatchTransformer(Encoder):
    """Transformer over lead x time patches with separate lead and time position embeddings."""

    def __init__(self, cfg: EcgPatchTransformerConfig) -> None:
        super().__init__()
        self.cfg, self.out_dim = cfg, cfg.hidden_size
        self.pools_by_mean = cfg.pooling == "mean"
        d = cfg.hidden_size
        self.patch_embed = nn.Linear(cfg.patch_size, d)  # one map for every lead: [P] -> [D]
        self.lead_embed = nn.Parameter(torch.zeros(cfg.leads, d))  # [12, D]
        self.time_embed = nn.Parameter(torch.zeros(cfg.max_length // cfg.patch_size, d))  # [T_max / P, D]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        for p in (self.lead_embed, self.time_embed, self.cls_token):
            nn.init.trunc_normal_(p, std=0.02)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = make_blocks(d, cfg.mlp_dim, cfg.num_layers, cfg.num_heads, cfg.dropout, cfg.qkv_bias)
        self.norm = nn.LayerNorm(d)
        self.scale = input_scaling(cfg.input_norm)

    def forward(self, x: Tensor) -> EncoderOutput:
        cfg = self.cfg
        t = check_signal(x, cfg.leads, cfg.patch_size)
        n = t // cfg.patch_size
        if n > self.time_embed.shape[0]:
            raise ValueError(f"ECG length {t} exceeds max_length {cfg.max_length} of this tower; crop or resample")
        b = x.shape[0]
        patches = self.scale(x).reshape(b, cfg.leads, n, cfg.patch_size)  # [B, 12, n, P]
        tokens = self.patch_embed(patches)  # [B, 12, n, D]
        tokens = tokens + self.lead_embed[None, :, None, :] + self.time_embed[None, None, :n, :]
        tokens = self.dropout(tokens.reshape(b, cfg.leads * n, -1))  # [B, 12 n, D], lead-major
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)  # [B, 1 + 12 n, D]
        tokens = self.norm(run_blocks(self.blocks, tokens, cfg.gradient_checkpointing))
        pooled = tokens[:, 0] if cfg.pooling == "cls" else tokens[:, 1:].mean(dim=1)  # [B, D]
        return EncoderOutput(pooled=pooled, tokens=tokens[:, 1:], grid=(cfg.leads, n), grid_axes=("lead", "time"),
                             token_stride=(1, cfg.patch_size), input_size=(cfg.leads, t))


@dataclasses.dataclass
class EcgEncoderConfig(EncoderConfig):
    """Fields every ECG tower has: the input scaling (see the module docstring)."""

    input_norm: EcgNorm | None = dataclasses.field(default=None, metadata=doc(
        "scale the mV input as (x - lead median) / scale_mv first; recommended: {center: median, scale_mv: 0.2} "
        "(= {}), as in configs/models; null = raw mV, as in every run made before this field (whose model.yaml thus "
        "still loads to the model it trained)"))


@register_config(ENCODERS, "ecg_resnet1d")
@dataclasses.dataclass
class EcgResNetConfig(EcgEncoderConfig):
    """1-D ResNet ECG tower (basic blocks, kernel 3) from MONAI; total time stride 32 with the defaults."""

    leads: int = knob(12, "input leads (channels)")
    layers: tuple[int, ...] = knob((1, 1, 1, 1), "residual blocks per stage; (2, 2, 2, 2) is ResNet-18")
    widths: tuple[int, ...] = knob((32, 64, 128, 256), "channels of the four stages")
    conv1_size: int = knob(15, "kernel of the first convolution in samples (15 = 30 ms at 500 Hz)")
    conv1_stride: int = knob(2, "stride of the first convolution")
    max_pool: bool = knob(True, "stride-2 max-pool after the first convolution")

    def build(self) -> Encoder:
        return self.finish(EcgResNet1d(self))


@register_config(ENCODERS, "ecg_patch_transformer")
@dataclasses.dataclass
class EcgPatchTransformerConfig(EcgEncoderConfig):
    """Lead x time patch transformer; tokens = 12 * T / P with T = signal samples and P = patch_size."""

    leads: int = knob(12, "input leads")
    patch_size: int = knob(50, "samples per patch P (50 = 100 ms at 500 Hz, 500 ms at 100 Hz)")
    max_length: int = knob(5000, "longest signal in samples; sizes the time position table (max_length / P rows)")
    hidden_size: int = knob(256, "token width D")
    mlp_dim: int = knob(512, "hidden width of each block's MLP")
    num_layers: int = knob(4, "transformer blocks")
    num_heads: int = knob(4, "attention heads")
    dropout: float = knob(0.0, "dropout in embeddings, attention and MLP")
    qkv_bias: bool = knob(True, "bias in the qkv projection")
    pooling: Literal["cls", "mean"] = knob("cls", "pooled vector: the [CLS] token or the mean of the tokens")
    gradient_checkpointing: bool = knob(False, "recompute block activations in backward (less memory)")

    def build(self) -> Encoder:
        return self.finish(EcgPatchTransformer(self))
