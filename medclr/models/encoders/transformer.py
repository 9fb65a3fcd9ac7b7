"""Pre-norm transformer blocks shared by the X-ray ViT and the ECG patch transformer (MONAI ``TransformerBlock``).

The blocks are MONAI's, with PyTorch's fused ``scaled_dot_product_attention`` switched on, and keep MONAI ViT's
parameter names (``blocks.{i}.attn.qkv``...), so a ``monai.networks.nets.ViT`` checkpoint loads as it is.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def make_blocks(hidden_size: int, mlp_dim: int, num_layers: int, num_heads: int, dropout: float,
                qkv_bias: bool) -> nn.ModuleList:
    """``num_layers`` MONAI transformer blocks; their unused cross-attention norm is frozen (no DDP surprises)."""
    from monai.networks.blocks import TransformerBlock  # imported when building: monai takes seconds to import

    blocks = nn.ModuleList(
        TransformerBlock(hidden_size, mlp_dim, num_heads, dropout_rate=dropout, qkv_bias=qkv_bias,
                         use_flash_attention=True)
        for _ in range(num_layers)
    )
    for block in blocks:
        block.norm_cross_attn.requires_grad_(False)  # exists for checkpoint compatibility, never used
    return blocks


def run_blocks(blocks: nn.ModuleList, x: Tensor, gradient_checkpointing: bool) -> Tensor:
    """Apply the blocks to ``x [B, N, D]``; with checkpointing, activations are recomputed in backward."""
    for block in blocks:
        recompute = gradient_checkpointing and x.requires_grad
        x = checkpoint(block, x, use_reentrant=False) if recompute else block(x)
    return x
