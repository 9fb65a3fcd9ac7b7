"""Shared helpers of the encoder tests."""

from __future__ import annotations

import torch


def positive_constant_kernels(enc: torch.nn.Module) -> None:
    """Every convolution kernel := 1 / fan-in, eval mode: on positive inputs no ReLU clips and each layer is
    symmetric about its kernel's centre, so input gradients show exact receptive fields."""
    for m in enc.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Conv1d):
            torch.nn.init.constant_(m.weight, 1.0 / m.weight[0].numel())
    enc.eval()
