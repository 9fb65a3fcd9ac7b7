"""Projection heads: encoder features ``[..., F]`` -> the shared embedding space ``[..., D]``.

A head acts on the last axis only, so the same weights project the pooled vector ``[B, F]`` and every token
``[B, N, F]``; grounding then compares a text embedding with projected X-ray patches or ECG segments in one space
(as in BioViL). ``linear`` is CLIP's projection (Radford et al., 2021); ``mlp`` is ConVIRT's two-layer head (Zhang
et al., 2022) and SimCLR's (Chen et al., 2020), which help when the encoder was pretrained for another task.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import nn

from medclr.models.config import RegisteredConfig, knob, register_config
from medclr.registry import Registry

HEADS: Registry[type[HeadConfig]] = Registry("projection head")


@dataclasses.dataclass
class HeadConfig(RegisteredConfig):
    """Base of projection-head configs; ``build(in_dim, out_dim)`` makes the module."""

    registry: ClassVar[Registry[Any]] = HEADS

    def build(self, in_dim: int, out_dim: int) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__}.build")


@register_config(HEADS, "linear")
@dataclasses.dataclass
class LinearHeadConfig(HeadConfig):
    """One linear map ``W x`` (no bias, as in CLIP: the embedding is normalised afterwards anyway)."""

    bias: bool = knob(False, "add a bias term")

    def build(self, in_dim: int, out_dim: int) -> nn.Module:
        return nn.Linear(in_dim, out_dim, bias=self.bias)


@register_config(HEADS, "mlp")
@dataclasses.dataclass
class MlpHeadConfig(HeadConfig):
    """``Linear -> [LayerNorm] -> GELU -> Dropout`` repeated ``num_layers - 1`` times, then a final Linear."""

    hidden_dim: int = knob(512, "width of the hidden layers")
    num_layers: int = knob(2, "linear layers in total (>= 2)")
    dropout: float = knob(0.0, "dropout after each hidden activation")
    layer_norm: bool = knob(True, "LayerNorm before each hidden activation")

    def build(self, in_dim: int, out_dim: int) -> nn.Module:
        if self.num_layers < 2:
            raise ValueError("an mlp head needs num_layers >= 2; use the 'linear' head for one layer")
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(self.num_layers - 1):
            layers.append(nn.Linear(width, self.hidden_dim))
            if self.layer_norm:
                layers.append(nn.LayerNorm(self.hidden_dim))
            layers += [nn.GELU(), nn.Dropout(self.dropout)]
            width = self.hidden_dim
        layers.append(nn.Linear(width, out_dim))
        return nn.Sequential(*layers)
