"""``MedClr``: one tower per modality (encoder + projection head) into a shared, L2-normalised space.

Any subset of modalities works - two (X-ray + report, as ConVIRT/CLIP), three (X-ray + ECG + report, as MoRE,
Symile and GRAM), or more (labs later): a tower is looked up by the modality's name.

* ``encode(modality, x)`` -> ``[B, D]`` unit vectors (``normalize=False`` keeps the raw projection).
* ``encode_tokens(modality, x)`` -> :class:`EncoderOutput` whose pooled vector and tokens went through the same
  head, so a text embedding can be compared with X-ray patches or ECG lead x time segments (grounding).
* ``forward(batch)`` -> ``{modality: [B, D]}`` for the modalities in the batch; rows whose modality is missing are
  not encoded and hold zeros (``batch.present`` says which rows are real; losses use it).
* ``logit_scale`` -> ``s = 1 / tau = exp(min(log_s, log(max)))``, learned in log space as in CLIP (Radford et al.,
  2021: init 1/0.07 ~ 14.3, cap 100). The cap keeps training stable. **Symile needs a far larger scale**: the
  multilinear inner product of three unit vectors in d dimensions is ~ d^-1 in size (about 0.008 at d = 128), so
  at s ~ 14 all logits are near 0 and the loss gives almost no gradient; start near ``s = d`` and cap at ~1000.

Identical report texts in one call are encoded once and shared (reports repeat, e.g. "No acute cardiopulmonary
process.").
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medclr.models.encoders.base import Encoder
from medclr.types import Batch, EncoderOutput, ModalityInput, TokenizedText, select_rows

if TYPE_CHECKING:
    from medclr.models.factory import ModelConfig


class Tower(nn.Module):
    """An encoder and its projection head; the head projects the pooled vector and every token."""

    def __init__(self, encoder: Encoder, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: ModalityInput) -> EncoderOutput:
        out = self.encoder(x)
        tokens = None if out.tokens is None else self.head(out.tokens)  # [B, N, F] -> [B, N, D]
        return out.with_features(self.head(out.pooled), tokens)  # pooled: [B, F] -> [B, D]


class LogitScale(nn.Module):
    """The contrastive inverse temperature ``s = exp(min(log_s, log(max_value)))``, learned in log space."""

    def __init__(self, init: float, max_value: float, learnable: bool = True) -> None:
        super().__init__()
        if not 0 < init <= max_value:
            raise ValueError(f"logit scale init {init} must lie in (0, max_value={max_value}]")
        self.log_max = math.log(max_value)
        self.log_scale = nn.Parameter(torch.tensor(math.log(init)), requires_grad=learnable)

    def forward(self) -> Tensor:
        return self.log_scale.clamp(max=self.log_max).exp()  # scalar; zero gradient while above the cap


class MedClr(nn.Module):
    """Towers keyed by modality + a learned logit scale; see the module docstring."""

    def __init__(self, towers: Mapping[str, Tower], embed_dim: int, logit_scale: LogitScale,
                 config: ModelConfig | None = None) -> None:
        super().__init__()
        if not towers:
            raise ValueError("MedClr needs at least one tower")
        self.towers = nn.ModuleDict(dict(towers))
        self.embed_dim = embed_dim
        self.scale = logit_scale
        self.config = config  # the constructor arguments, for self-describing checkpoints

    @property
    def modalities(self) -> list[str]:
        return list(self.towers)

    @property
    def logit_scale(self) -> Tensor:
        """``s = 1 / tau`` (scalar tensor), clamped at the configured maximum."""
        return self.scale()

    def tower(self, modality: str) -> Tower:
        if modality not in self.towers:
            raise KeyError(f"this model has no '{modality}' tower; it has: {', '.join(self.towers)}")
        return typing.cast(Tower, self.towers[modality])

    def prepare(self, modality: str, x: ModalityInput) -> ModalityInput:
        """Tokenize text, check the type, and move the input to the model's device."""
        x = self.tower(modality).encoder.prepare(x)
        device = next(self.parameters()).device
        return x.to(device) if isinstance(x, Tensor | TokenizedText) else x

    def encode_tokens(self, modality: str, x: ModalityInput, normalize: bool = True) -> EncoderOutput:
        """Projected pooled vector ``[B, D]`` and tokens ``[B, N, D]`` on the encoder's grid."""
        out = self.tower(modality)(self.prepare(modality, x))
        if not normalize:
            return out
        tokens = None if out.tokens is None else F.normalize(out.tokens.float(), dim=-1)
        return out.with_features(F.normalize(out.pooled.float(), dim=-1), tokens)

    def encode(self, modality: str, x: ModalityInput, normalize: bool = True) -> Tensor:
        """Embeddings ``[B, D]`` (unit length when ``normalize``); repeated texts are encoded once."""
        if isinstance(x, list) and len(set(x)) < len(x):
            unique = list(dict.fromkeys(x))
            where = {text: i for i, text in enumerate(unique)}
            emb = self.encode(modality, unique, normalize)  # [B_unique, D]
            return emb[torch.tensor([where[text] for text in x], device=emb.device)]  # [B, D]
        pooled = self.tower(modality)(self.prepare(modality, x)).pooled.float()  # [B, D]
        return F.normalize(pooled, dim=-1) if normalize else pooled

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        """``{modality: [B, D]}`` unit vectors for each modality of the batch that has a tower.

        Rows whose modality is missing (``batch.present[m][i]`` False) are skipped by the encoder and are zero
        rows here; a modality no row has is left out of the result.
        """
        return self.encode_batch(batch)[0]

    def encode_batch(self, batch: Batch, token_modalities: Sequence[str] = ()
                     ) -> tuple[dict[str, Tensor], dict[str, EncoderOutput]]:
        """:meth:`forward`'s embeddings plus, for ``token_modalities``, the unit token grids (``[B, N, D]``,
        zero rows and a False ``token_mask`` where the modality is missing), for token-level losses."""
        emb: dict[str, Tensor] = {}
        grids: dict[str, EncoderOutput] = {}
        for modality in self.towers:
            if modality not in batch.inputs:
                continue
            x, present = batch.inputs[modality], batch.present[modality]
            if not bool(present.any()):
                continue
            rows = None if bool(present.all()) else present.nonzero().squeeze(1).cpu()  # [B_present]
            x = x if rows is None else select_rows(x, rows)
            if modality not in token_modalities:
                emb[modality] = _scatter(self.encode(modality, x), rows, len(present))  # [B, D]
                continue
            out = self.encode_tokens(modality, x)
            if out.tokens is None:
                raise ValueError(f"the {modality} tower returns no token grid; a token-level loss cannot use it")
            mask = out.token_mask if out.token_mask is not None else torch.ones(out.tokens.shape[:2], dtype=torch.bool)
            emb[modality] = _scatter(out.pooled, rows, len(present))
            grids[modality] = dataclasses.replace(out, pooled=emb[modality],
                                                  tokens=_scatter(out.tokens, rows, len(present)),  # [B, N, D]
                                                  token_mask=_scatter(mask.to(out.tokens.device), rows, len(present)))
        return emb, grids

    def trainable_share(self) -> tuple[int, int]:
        """(trainable, total) parameter counts."""
        params = list(self.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def _scatter(values: Tensor, rows: Tensor | None, size: int) -> Tensor:
    """``values`` of the present ``rows`` placed into ``size`` rows (zeros / False elsewhere); as is if rows is None."""
    if rows is None:
        return values
    full = values.new_zeros(size, *values.shape[1:])
    return full.index_copy(0, rows.to(values.device), values)
