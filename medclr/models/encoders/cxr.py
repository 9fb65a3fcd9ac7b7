"""Chest X-ray towers: 1-channel images ``[B, 1, H, W]`` -> pooled features + a token grid for grounding.

* ``cxr_vit`` - Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021) from MONAI
  blocks: the image is cut into P x P patches, each linearly embedded, plus a learned position table and a [CLS]
  token; tokens are the (H/P) x (W/P) patch grid. Any size divisible by P works (the position table is resampled
  bicubically). Loads MONAI ViT and timm ViT checkpoints.
* ``cxr_densenet`` - DenseNet (Huang et al., CVPR 2017; DenseNet-121 by default, CheXNet's backbone) from MONAI.
* ``cxr_resnet`` - ResNet (He et al., CVPR 2016) from MONAI; depth 10/18/34/50.
* ``cxr_cnn`` - a small stride-2 CNN for CPU configs.

CNN towers return the last feature map as tokens (grid = its h x w) and its mean as the pooled vector. Mind the
first stride on CPU: MONAI ResNet's default stride-1 first convolution ran 18x slower than a stride-2 CNN at 128 px,
so ``conv1_stride`` defaults to 2 here.

**Input standardisation.** Every X-ray tower takes images in [0, 1] (``medclr.io.read_cxr``, the cache) and can
first map them to ``(x - mean) / std`` (``input_norm: {mean: 0.5, std: 0.25}``: roughly zero-mean, unit-variance
for chest radiographs), inside the module so that training, evaluation, the app and ``load_model`` all apply it.
Raw [0, 1] pixels all sit on one side of zero: a ViT's patch embeddings then share a large common component and,
at initialisation, different X-rays get nearly the same [CLS] output (mean cosine 0.994 on the demo ViT; 0.79
with the standardisation), which slows early contrastive learning. The step holds no weights (checkpoints keep
their keys). The configs in ``configs/models`` turn it on; the field's default (null: off) keeps the model.yaml
of runs made before it meaning the model they trained.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Literal

import torch
from torch import Tensor, nn

from medclr.models.config import MedclrConfigError, doc, knob, register_config
from medclr.models.encoders import weights
from medclr.models.encoders.base import ENCODERS, Encoder, EncoderConfig, resnet_token_centre
from medclr.models.encoders.transformer import make_blocks, run_blocks
from medclr.types import EncoderOutput

# timm ViT parameter names -> MONAI ViT parameter names (qkv and norm names already agree).
TIMM_VIT_RULES = (
    (r"^patch_embed\.proj\.", "patch_embedding.patch_embeddings."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"blocks.\1.attn.out_proj."),
    (r"^blocks\.(\d+)\.mlp\.fc1\.", r"blocks.\1.mlp.linear1."),
    (r"^blocks\.(\d+)\.mlp\.fc2\.", r"blocks.\1.mlp.linear2."),
)
# torchvision DenseNet (``denselayer1.norm1`` or the old ``norm.1``) -> MONAI (``denselayer1.layers.norm1``).
TORCHVISION_DENSENET_RULES = ((r"(denselayer\d+)\.(norm|relu|conv)\.?(\d)", r"\1.layers.\2\3"),)


def check_image(x: Tensor, multiple: int = 1) -> tuple[int, int]:
    """Validate ``x [B, 1, H, W]`` (H, W divisible by ``multiple``) and return (H, W)."""
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"X-ray towers take [B, 1, H, W] tensors; got shape {tuple(x.shape)}")
    h, w = int(x.shape[2]), int(x.shape[3])
    if h % multiple or w % multiple:
        raise ValueError(f"image size {h}x{w} is not divisible by the patch size {multiple}; resize or pad it")
    return h, w


def feature_map_output(fmap: Tensor, input_size: tuple[int, int], stride: int, centre: float = 0.5) -> EncoderOutput:
    """EncoderOutput of a CNN feature map ``[B, C, h, w]`` with total stride ``stride``: tokens = its cells, pooled =
    their mean. Cell (i, j) is centred at input coordinates ``(centre + i * stride, centre + j * stride)``.

    Where a cell's receptive field is centred: a layer with kernel k, stride s, padding p and dilation d centres
    output o on input unit ``o s - p + d (k - 1) / 2``, so with input unit n centred at ``a + b n`` its output o is
    centred at ``a + b (d (k - 1) / 2 - p) + b s o``. "Same" padding (``p = d (k - 1) / 2``: every 3x3 conv with
    padding 1, 7x7 with 3, 1x1 with 0) keeps ``a``: a stack of them centres cell i on input pixel ``i * stride``,
    coordinate ``0.5 + i * stride``, half a cell before a patch centre ``(i + 1/2) stride`` (7.5 pixels for the
    demo CNN's stride 16; measured on it: receptive-field centroids at 47.9, 64.4, 93.4 for cells 3, 4, 6)."""
    h, w = fmap.shape[2], fmap.shape[3]
    tokens = fmap.flatten(2).transpose(1, 2)  # [B, h*w, C]
    return EncoderOutput(pooled=tokens.mean(dim=1), tokens=tokens, grid=(h, w), grid_axes=("row", "col"),
                         token_stride=(stride, stride), token_centre=(centre, centre), input_size=input_size)


@dataclasses.dataclass
class ImageNorm:
    """Fixed X-ray input standardisation ``(x - mean) / std`` for [0, 1] images (see the module docstring)."""

    mean: float = knob(0.5, "subtracted from the [0, 1] image (ImageNet grey-scale weights: 0.449)")
    std: float = knob(0.25, "then divided by this (ImageNet grey-scale weights: 0.226)")

    def __post_init__(self) -> None:
        if not self.std > 0:
            raise MedclrConfigError(f"input_norm.std: must be > 0, got {self.std}")


class Standardize(nn.Module):
    """``(x - mean) / std`` with plain-float constants: no parameters or buffers, so no state-dict keys."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = float(mean), float(std)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"


def input_standardization(norm: ImageNorm | None) -> nn.Module:
    """The tower's first step: :class:`Standardize` for ``norm``, or the identity when it is None."""
    return nn.Identity() if norm is None else Standardize(norm.mean, norm.std)


class CxrViT(Encoder):
    """ViT over 1-channel images with MONAI parameter names (``patch_embedding``, ``cls_token``, ``blocks``)."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        from monai.networks.blocks import PatchEmbeddingBlock  # monai imports in ~5 s: only when building

        self.cfg, self.out_dim, self.patch_size = cfg, cfg.hidden_size, cfg.patch_size
        self.pools_by_mean = cfg.pooling == "mean"
        self.patch_embedding = PatchEmbeddingBlock(
            in_channels=1, img_size=cfg.image_size, patch_size=cfg.patch_size, hidden_size=cfg.hidden_size,
            num_heads=cfg.num_heads, proj_type="conv", pos_embed_type="learnable", dropout_rate=cfg.dropout,
            spatial_dims=2,
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.hidden_size))
        self.blocks = make_blocks(cfg.hidden_size, cfg.mlp_dim, cfg.num_layers, cfg.num_heads, cfg.dropout,
                                  cfg.qkv_bias)
        self.norm = nn.LayerNorm(cfg.hidden_size)
        self.standardize = input_standardization(cfg.input_norm)

    def forward(self, x: Tensor) -> EncoderOutput:
        h, w = check_image(x, self.patch_size)
        grid = (h // self.patch_size, w // self.patch_size)
        x = self.standardize(x)  # [B, 1, H, W], ~zero mean, unit variance
        patches = self.patch_embedding.patch_embeddings(x).flatten(2).transpose(1, 2)  # [B, h*w, D]
        pos = weights.resize_pos_embed(self.patch_embedding.position_embeddings, grid)  # [1, h*w, D]
        tokens = self.patch_embedding.dropout(patches + pos)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)  # [B, 1 + h*w, D]
        tokens = self.norm(run_blocks(self.blocks, tokens, self.cfg.gradient_checkpointing))
        pooled = tokens[:, 0] if self.cfg.pooling == "cls" else tokens[:, 1:].mean(dim=1)  # [B, D]
        return EncoderOutput(pooled=pooled, tokens=tokens[:, 1:], grid=grid, grid_axes=("row", "col"),
                             token_stride=(self.patch_size, self.patch_size), input_size=(h, w))

    def map_state_dict(self, sd: weights.StateDict) -> weights.StateDict:
        """timm names -> MONAI names; timm's [CLS] position folded into ``cls_token``; position table resized."""
        if "patch_embed.proj.weight" in sd:
            sd = weights.rename(sd, TIMM_VIT_RULES)
            pos = sd.pop("pos_embed", None)
            if pos is not None:
                n = pos.shape[1]
                has_cls = math.isqrt(n) ** 2 != n and math.isqrt(n - 1) ** 2 == n - 1
                if has_cls and "cls_token" in sd:
                    sd["cls_token"] = sd["cls_token"] + pos[:, :1]  # MONAI adds no position to [CLS]
                sd["patch_embedding.position_embeddings"] = pos[:, 1:] if has_cls else pos
        key = "patch_embedding.position_embeddings"
        if key in sd:
            side = self.cfg.image_size // self.patch_size
            sd[key] = weights.resize_pos_embed(sd[key], (side, side))
        return sd


class CxrDenseNet(Encoder):
    """DenseNet feature extractor (MONAI ``DenseNet.features`` + ReLU); tokens = the final feature map."""

    pools_by_mean = True  # feature_map_output

    def __init__(self, cfg: DenseNetConfig) -> None:
        super().__init__()
        from monai.networks.nets import DenseNet

        net = DenseNet(spatial_dims=2, in_channels=1, out_channels=1, init_features=cfg.init_features,
                       growth_rate=cfg.growth_rate, block_config=cfg.block_config, dropout_prob=cfg.dropout)
        self.features = net.features
        # stride-2 stem conv and max-pool ("same"-padded: centre 0.5), then one 2x2 average-pooling transition per
        # block after the first, each moving the centre by half its input spacing (feature_map_output)
        self.stride, self.centre = 4, 0.5
        for _ in cfg.block_config[1:]:
            self.centre, self.stride = self.centre + self.stride / 2, self.stride * 2
        self.out_dim = typing.cast(nn.Linear, net.class_layers.out).in_features
        self.standardize = input_standardization(cfg.input_norm)

    def forward(self, x: Tensor) -> EncoderOutput:
        size = check_image(x)
        fmap = torch.relu(self.features(self.standardize(x)))  # [B, C, H/32, W/32] for DenseNet-121
        return feature_map_output(fmap, size, self.stride, self.centre)

    def map_state_dict(self, sd: weights.StateDict) -> weights.StateDict:
        return weights.rename(sd, TORCHVISION_DENSENET_RULES)


RESNET_LAYOUTS: dict[int, tuple[Literal["basic", "bottleneck"], list[int]]] = {
    10: ("basic", [1, 1, 1, 1]), 18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
}


class CxrResNet(Encoder):
    """MONAI ResNet without its classifier; parameter names match torchvision/MONAI (``conv1``, ``layer1``...)."""

    pools_by_mean = True  # feature_map_output

    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__()
        from monai.networks.nets import ResNet

        block, layers = RESNET_LAYOUTS[cfg.depth]
        net = ResNet(block=block, layers=layers, block_inplanes=list(cfg.widths), spatial_dims=2,
                     n_input_channels=1, conv1_t_size=cfg.conv1_size, conv1_t_stride=cfg.conv1_stride,
                     no_max_pool=not cfg.max_pool, feed_forward=False, bias_downsample=False)
        self.conv1, self.bn1, self.act, self.maxpool = net.conv1, net.bn1, net.act, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.use_max_pool = cfg.max_pool
        self.stride = cfg.conv1_stride * (2 if cfg.max_pool else 1) * 8  # layers 2-4 halve the map
        self.centre = resnet_token_centre(cfg.conv1_size)
        self.out_dim = cfg.widths[-1] * (4 if block == "bottleneck" else 1)
        self.standardize = input_standardization(cfg.input_norm)

    def forward(self, x: Tensor) -> EncoderOutput:
        size = check_image(x)
        y = self.act(self.bn1(self.conv1(self.standardize(x))))
        if self.use_max_pool:
            y = self.maxpool(y)
        y = self.layer4(self.layer3(self.layer2(self.layer1(y))))  # [B, C, h, w]
        return feature_map_output(y, size, self.stride, self.centre)


class CxrSmallCNN(Encoder):
    """Stages of (3x3 stride-2 conv, BatchNorm, ReLU) [+ stride-1 convs]; cheap enough for CPU training.

    ``output_stride`` below ``2 ** len(channels)`` keeps the token grid finer for grounding the way DeepLab does
    (Chen et al., "Rethinking Atrous Convolution", 2017): the last stages stop halving the map and dilate their
    convolutions instead (each converted stage doubles the dilation of the ones after its first conv), so every
    receptive field stays as it was while the grid doubles per converted stage (128 px, 4 stages: 8 x 8 -> 16 x 16
    with ``output_stride: 8``, for ~1.8x the tower's compute). ``atrous: false`` skips the dilation: the tokens
    then see less of the image (the demo CNN at output stride 8: 75 instead of 91 pixels), which keeps them local.

    ``antialias`` low-passes the input of every strided convolution with a fixed binomial filter (BlurPool; Zhang,
    "Making Convolutional Networks Shift-Invariant Again", ICML 2019): a stride-2 convolution samples every second
    output of a stride-1 one, and without a low-pass first a structure thinner than the stride lands in whichever
    cell the sampling phase favours, so features (and a phrase's map) jump as the image shifts by one pixel.
    Blurring the input of a linear convolution equals blurring its output (they commute), so this is Zhang's
    blur-then-subsample at the cost of one 3 x 3 depthwise filter per strided stage; it is symmetric, so the
    token centres stay where :func:`feature_map_output` puts them.

    ``coord_channels`` appends two input channels, the row and column coordinate of every pixel scaled to [-1, 1]
    (CoordConv; Liu et al., 2018). Convolutions are translation-equivariant and the tower mean-pools, so without
    them the pooled vector barely knows *where* a finding is (only the zero padding at the borders tells); with
    them the tokens can encode position, so "left pleural effusion" can differ from "right pleural effusion" in
    the embedding and a phrase's location words can steer its map.
    """

    pools_by_mean = True  # feature_map_output

    def __init__(self, cfg: SmallCnnConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        self.coord_channels, self.gem_p, self.token_keep = cfg.coord_channels, cfg.gem_p, cfg.token_keep
        c_in, self.stride, dilation = 3 if cfg.coord_channels else 1, 1, 1
        output_stride = cfg.output_stride or 2 ** len(cfg.channels)
        for c in cfg.channels:
            first_dilation = dilation
            if self.stride * 2 <= output_stride:
                stride, self.stride = 2, self.stride * 2
            else:  # keep the resolution; an atrous stage widens its later convolutions' reach instead
                stride, dilation = 1, dilation * (2 if cfg.atrous else 1)
            if stride == 2 and cfg.antialias:
                layers.append(BinomialBlur(c_in))
            layers += [nn.Conv2d(c_in, c, 3, stride=stride, padding=first_dilation, dilation=first_dilation,
                                 bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            for _ in range(cfg.convs_per_stage - 1):
                layers += [nn.Conv2d(c, c, 3, padding=dilation, dilation=dilation, bias=False), nn.BatchNorm2d(c),
                           nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.out_dim = cfg.channels[-1]
        self.standardize = input_standardization(cfg.input_norm)

    def forward(self, x: Tensor) -> EncoderOutput:
        size = check_image(x)
        x = self.standardize(x)  # [B, 1, H, W]
        if self.coord_channels:
            x = torch.cat([x, pixel_coordinates(x)], dim=1)  # [B, 3, H, W]
        fmap = self.features(x)  # grid = ceil(size / stride)
        if self.gem_p != 1:
            fmap = gem_tokens(fmap, self.gem_p)
        out = feature_map_output(fmap, size, self.stride)
        return keep_random_tokens(out, self.token_keep) if self.training and self.token_keep < 1 else out


class BinomialBlur(nn.Module):
    """Fixed depthwise 3 x 3 binomial low-pass ``[1, 2, 1]^T [1, 2, 1] / 16``, zero-padded to the same size (the
    "Tri-3" filter of Zhang, ICML 2019). A non-persistent buffer: no parameters, no state-dict keys."""

    kernel: Tensor  # [C, 1, 3, 3]

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (torch.outer(k, k) / 16).expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.conv2d(x, self.kernel.to(x.dtype), padding=1, groups=x.shape[1])


def gem_tokens(fmap: Tensor, p: float, eps: float = 1e-6) -> Tensor:
    """Re-weight a non-negative feature map ``x [B, C, h, w]`` so that its spatial mean is the generalised mean
    ``g_c = (mean_ij x_ijc^p)^(1/p)`` of each channel (GeM pooling; Radenovic et al., "Fine-tuning CNN Image
    Retrieval with No Human Annotation", TPAMI 2018): ``x'_ijc = x_ijc (x_ijc / g_c)^(p - 1)``, since
    ``mean_ij x'_ijc = mean_ij x_ijc^p / g_c^(p - 1) = g_c``. p = 1 is the mean; as p grows each channel's pooled
    value approaches its maximum, so the embedding comes from the cells where a feature is strongest. The
    re-weighted cells are the tokens, so the phrase maps stay exact contributions to the cosine (CAM). Computed in
    float32 (``x^p`` under bf16 autocast loses the small values)."""
    x = fmap.float().clamp(min=0)
    g = x.pow(p).mean(dim=(2, 3), keepdim=True).pow(1 / p).clamp(min=eps)  # [B, C, 1, 1]
    return x * (x / g).pow(p - 1)


def keep_random_tokens(out: EncoderOutput, keep: float) -> EncoderOutput:
    """Hide a random share ``1 - keep`` of every image's grid cells from the pooled vector and the token-level
    losses (training only; Hide-and-Seek, Singh & Lee, ICCV 2017, hides input patches, FLIP, Li et al., CVPR 2023,
    drops patch tokens): each image keeps ``k = round(keep N)`` of its ``N`` cells, drawn without replacement,
    and its pooled vector is their mean.

    Why it can anchor the grounding maps: with every cell kept, the loss is as happy when one cell *beside* a thin
    finding carries it (its receptive field sees the finding too) as when the cell on it does, and which one wins is
    up to the seed. With random cells hidden, a finding carried by one cell is lost whenever that cell is; the
    loss then asks every cell that sees the finding to carry it, most strongly the ones that see it best, which
    are the cells on it (a cell's effective receptive field peaks at its centre; Luo et al., NeurIPS 2016).
    Measured on the demo world it does not: half the cells hidden spread each finding over many cells and the
    pointing game fell (0.481 against the recipe's 0.60-0.68; benchmarks/RUN_LOG.md), so the demo keeps 1.

    Returns tokens ``[B, k, F]`` off the grid (``grid`` None: a set of cells, as the local term reads them)."""
    tokens = out.tokens  # [B, N, F]
    if tokens is None or not 0 < keep <= 1:
        raise ValueError(f"keep_random_tokens needs a token grid and 0 < keep <= 1; got keep={keep}")
    b, n, f = tokens.shape
    k = max(1, round(keep * n))
    kept = torch.rand(b, n, device=tokens.device).argsort(dim=1)[:, :k]  # [B, k]: a random subset per image
    tokens = tokens.gather(1, kept.unsqueeze(-1).expand(b, k, f))  # [B, k, F]
    return dataclasses.replace(out, pooled=tokens.mean(dim=1), tokens=tokens, token_mask=None, grid=None,
                               grid_axes=(), token_stride=None, token_centre=None)


def pixel_coordinates(x: Tensor) -> Tensor:
    """``[B, 2, H, W]``: each pixel's row and column, pixel centres spread linearly from -1 (top / left) to 1."""
    b, _, h, w = x.shape
    rows = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)[:, None].expand(h, w)
    cols = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)[None, :].expand(h, w)
    return torch.stack([rows, cols])[None].expand(b, -1, -1, -1)


@dataclasses.dataclass
class CxrEncoderConfig(EncoderConfig):
    """Fields every X-ray tower has: the input standardisation (see the module docstring)."""

    input_norm: ImageNorm | None = dataclasses.field(default=None, metadata=doc(
        "standardise the [0, 1] input as (x - mean) / std first; recommended: {mean: 0.5, std: 0.25} (= {}), as in "
        "configs/models; null = raw [0, 1] pixels, as in every run made before this field (whose model.yaml thus "
        "still loads to the model it trained)"))


@register_config(ENCODERS, "cxr_vit")
@dataclasses.dataclass
class ViTConfig(CxrEncoderConfig):
    """ViT X-ray tower (Dosovitskiy et al., 2021); ViT-B/16 is hidden 768, mlp 3072, 12 layers, 12 heads."""

    image_size: int = knob(224, "training image size (square); sizes the position table, other sizes resample it")
    patch_size: int = knob(16, "patch side P in pixels; inputs must be divisible by P; tokens form an (H/P, W/P) grid")
    hidden_size: int = knob(768, "token width D")
    mlp_dim: int = knob(3072, "hidden width of each block's MLP (usually 4 D)")
    num_layers: int = knob(12, "number of transformer blocks")
    num_heads: int = knob(12, "attention heads (D must be divisible by it)")
    dropout: float = knob(0.0, "dropout rate in embeddings, attention and MLP")
    qkv_bias: bool = knob(True, "bias in the qkv projection (True matches timm/ImageNet ViTs)")
    pooling: Literal["cls", "mean"] = knob("cls", "pooled vector: the [CLS] token or the mean of patch tokens")
    gradient_checkpointing: bool = knob(False, "recompute block activations in backward (less memory, ~30% slower)")

    def build(self) -> Encoder:
        return self.finish(CxrViT(self))


@register_config(ENCODERS, "cxr_densenet")
@dataclasses.dataclass
class DenseNetConfig(CxrEncoderConfig):
    """DenseNet X-ray tower (Huang et al., 2017); the defaults are DenseNet-121 (1024 features, stride 32)."""

    init_features: int = knob(64, "channels of the first convolution")
    growth_rate: int = knob(32, "channels each dense layer adds (k in the paper)")
    block_config: tuple[int, ...] = knob((6, 12, 24, 16), "dense layers per block; (6, 12, 24, 16) = DenseNet-121")
    dropout: float = knob(0.0, "dropout after each dense layer")

    def build(self) -> Encoder:
        return self.finish(CxrDenseNet(self))


@register_config(ENCODERS, "cxr_resnet")
@dataclasses.dataclass
class ResNetConfig(CxrEncoderConfig):
    """ResNet X-ray tower (He et al., 2016) from MONAI, with a deliberate first stride."""

    depth: Literal[10, 18, 34, 50] = knob(18, "ResNet depth: 10, 18, 34 (basic blocks) or 50 (bottlenecks)")
    widths: tuple[int, ...] = knob((64, 128, 256, 512), "channels of the four stages")
    conv1_size: int = knob(7, "kernel of the first convolution")
    conv1_stride: int = knob(2, "stride of the first convolution (MONAI's default 1 is 4x the compute)")
    max_pool: bool = knob(True, "3x3 stride-2 max-pool after the first convolution (total stride 32)")

    def build(self) -> Encoder:
        return self.finish(CxrResNet(self))


@register_config(ENCODERS, "cxr_cnn")
@dataclasses.dataclass
class SmallCnnConfig(CxrEncoderConfig):
    """A small stride-2 CNN for CPU runs: each stage halves the image; 4 stages at 128 px give an 8 x 8 grid."""

    channels: tuple[int, ...] = knob((32, 64, 128, 256), "output channels of each stride-2 stage")
    convs_per_stage: int = knob(1, "convolutions per stage (the first strided, the rest stride 1)")
    output_stride: int | None = knob(None, "largest total stride, a power of 2 >= 2 (null: 2 ** stages): later "
                                           "stages dilate instead of halving the map, for a finer token grid "
                                           "(8 at 128 px: 16 x 16)")
    atrous: bool = knob(True, "stages past output_stride dilate their convolutions, keeping the receptive field "
                              "(DeepLab); false: they do not, and tokens see less of the image")
    coord_channels: bool = knob(False, "CoordConv (Liu et al., 2018): the first convolution also sees each pixel's "
                                       "row and column in [-1, 1], so tokens can tell left from right")
    gem_p: float = knob(1.0, "generalised-mean pooling exponent (GeM; Radenovic et al., 2018): 1 = the mean, larger "
                             "leans towards each channel's maximum; the tokens are re-weighted so their mean stays "
                             "the pooled vector (see gem_tokens)")
    antialias: bool = knob(False, "low-pass each strided convolution's input with a fixed binomial filter "
                                  "(BlurPool; Zhang, ICML 2019), for features that follow the image's shifts")
    token_keep: float = knob(1.0, "share of each image's grid cells kept, drawn at random per image, for the pooled "
                                  "vector and the token-level losses in training (1 = all; evaluation keeps all; "
                                  "see keep_random_tokens)")

    def __post_init__(self) -> None:
        s = self.output_stride
        if s is not None and (s < 2 or s & (s - 1)):
            raise MedclrConfigError(f"output_stride: must be a power of 2 >= 2, got {s}")
        if not self.gem_p >= 1:
            raise MedclrConfigError(f"gem_p: must be >= 1 (1 = mean pooling), got {self.gem_p}")
        if not 0 < self.token_keep <= 1:
            raise MedclrConfigError(f"token_keep: must lie in (0, 1], got {self.token_keep}")

    def build(self) -> Encoder:
        return self.finish(CxrSmallCNN(self))
