"""Pooling is right for left and right padding alike."""

from __future__ import annotations

import torch

from medclr.models.pooling import POOLERS, cls_pool, last_token_pool, mean_pool


def _padded(lengths: list[int], side: str, width: int = 5) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Hidden states [B, L, 3] whose real tokens are rows of `real`; padding filled with 99."""
    torch.manual_seed(0)
    real = [torch.randn(n, 3) for n in lengths]
    hidden = torch.full((len(lengths), width, 3), 99.0)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for b, r in enumerate(real):
        n = len(r)
        sl = slice(0, n) if side == "right" else slice(width - n, width)
        hidden[b, sl], mask[b, sl] = r, 1
    return hidden, mask, real


def test_poolers_pick_the_real_tokens_on_both_sides() -> None:
    for side in ("left", "right"):
        hidden, mask, real = _padded([2, 5, 1, 4], side)
        torch.testing.assert_close(last_token_pool(hidden, mask), torch.stack([r[-1] for r in real]))
        torch.testing.assert_close(cls_pool(hidden, mask), torch.stack([r[0] for r in real]))
        torch.testing.assert_close(mean_pool(hidden, mask), torch.stack([r.mean(0) for r in real]))


def test_registry_names() -> None:
    assert POOLERS.names() == ["cls", "last_token", "mean"]
    assert mean_pool(torch.ones(1, 3, 2), torch.zeros(1, 3)).tolist() == [[0.0, 0.0]]  # no tokens: zeros, no NaN
