"""The encoder interface and the ``ENCODERS`` registry of encoder configs.

An encoder is an ``nn.Module`` whose ``forward`` maps a batch of one modality to an :class:`EncoderOutput`
(pooled ``[B, F]`` + tokens ``[B, N, F]`` on a grid). Each encoder has a config dataclass registered by name in
``ENCODERS``; YAML chooses one with ``encoder: {name: cxr_vit, patch_size: 16, ...}`` and ``build()`` makes the
module. Names say the modality first (``cxr_*``, ``ecg_*``, ``text_*``) so a config reads unambiguously.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor, nn

from medclr.models.config import RegisteredConfig, knob
from medclr.models.encoders import weights
from medclr.registry import Registry
from medclr.types import EncoderOutput, ModalityInput

ENCODERS: Registry[type[EncoderConfig]] = Registry("encoder")


@dataclasses.dataclass
class EncoderConfig(RegisteredConfig):
    """Fields every encoder config has: where pretrained weights come from and how to read them."""

    registry: ClassVar[Registry[Any]] = ENCODERS

    pretrained: str | None = knob(None, "local weights file or folder (.safetensors, or a weights-only .pt/.bin)")
    pretrained_prefix: str | None = knob(None, "keep only checkpoint keys under this prefix, e.g. 'visual.'")
    pretrained_strict: bool = knob(False, "fail when a weight of the encoder is missing from the checkpoint")
    frozen: bool = knob(False, "keep the encoder's weights fixed (pretrained or random features): only the "
                               "projection head learns; the weights are still saved with the run")

    def build(self) -> Encoder:
        """Make the encoder module (and load ``pretrained`` when given)."""
        raise NotImplementedError(f"{type(self).__name__}.build")

    def finish(self, encoder: Encoder) -> Encoder:
        """Load pretrained weights when configured; subclasses call this at the end of ``build``."""
        if self.pretrained:
            encoder.load_pretrained(self.pretrained, prefix=self.pretrained_prefix, strict=self.pretrained_strict)
        if self.frozen:
            encoder.requires_grad_(False)
        return encoder


class Encoder(nn.Module):
    """Base class: ``out_dim`` features per pooled vector and per token; ``forward`` returns an EncoderOutput."""

    out_dim: int
    pools_by_mean: bool = False  # pooled == the mean of the tokens (CNN feature maps, mean-pooled transformers)

    def prepare(self, x: ModalityInput) -> ModalityInput:
        """Turn a raw batch into the module's input (text towers tokenize strings); others take tensors."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{type(self).__name__} takes a tensor, got {type(x).__name__}")
        return x

    def forward(self, x: Any) -> EncoderOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def map_state_dict(self, sd: weights.StateDict) -> weights.StateDict:
        """Rename a checkpoint's keys onto this module's (override for known sources, e.g. timm)."""
        return sd

    def load_pretrained(self, path: str | Path, *, prefix: str | None = None,
                        strict: bool = False) -> weights.LoadReport:
        """Load a local checkpoint through :func:`weights.load_into` with this encoder's key mapping."""
        sd = weights.read_state_dict(path)
        return weights.load_into(self, sd, source=str(path), mapper=self.map_state_dict, prefix=prefix,
                                 strict=strict)


def resnet_token_centre(conv1_size: int) -> float:
    """Input coordinate of the first token's centre for a MONAI ResNet (2-D or 1-D): its first convolution pads
    ``k // 2`` (centred for odd ``k``, half a unit early for even ``k``); every later layer is "same"-padded
    (:func:`medclr.models.encoders.cxr.feature_map_output` has the rule)."""
    return 0.5 + (conv1_size - 1) / 2 - conv1_size // 2
