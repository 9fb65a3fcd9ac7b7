"""Typed boundaries shared by data, models, losses and evaluation.

* :data:`Modality` names the inputs medclr knows today; models and batches key their dicts by plain ``str`` so
  that a new modality (labs, say) needs a new tower, not a new type.
* :class:`Geometry` records what an image transform did (crop, resize, pad) so that a heatmap on the network's
  input grid can be mapped back to the original pixels ("record, don't infer").
* :class:`EncoderOutput` is what every encoder tower returns: a pooled vector, the tokens it pooled from and the
  grid those tokens lie on, so that phrases can be grounded on X-ray patches or on ECG lead x time segments.
* :class:`TokenizedText`, :class:`Sample` and :class:`Batch` carry inputs; a batch has one presence mask per
  modality, because a study may lack an ECG or a report and no row may be silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, TypedDict

import numpy as np
import torch
from torch import Tensor

Modality = Literal["cxr", "ecg", "report"]
MODALITIES: tuple[Modality, ...] = ("cxr", "ecg", "report")


@dataclass(frozen=True)
class Geometry:
    """What an image transform did, in order: crop (original pixels) -> resize -> pad, giving ``output_size``.

    Coordinates are continuous (row, col) positions in pixel units (0 = the top/left edge of the first pixel): a
    point ``p`` of the original image maps to ``(p - crop_origin) * scale + pad_before`` on the network input.

    >>> g = Geometry(original_size=(100, 200), crop=(0, 50, 100, 100), resized_size=(50, 50), pad=(7, 7, 7, 7))
    >>> g.output_size
    (64, 64)
    >>> g.to_original(np.array([[7.0, 7.0], [57.0, 57.0]])).tolist()
    [[0.0, 50.0], [100.0, 150.0]]
    """

    original_size: tuple[int, int]  # (H0, W0) of the image as read
    crop: tuple[int, int, int, int] | None = None  # (top, left, height, width) in original pixels; None = all
    resized_size: tuple[int, int] | None = None  # (h, w) after resizing the crop; None = not resized
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)  # (top, bottom, left, right) pixels added after resizing
    flipped: bool = False  # horizontal flip applied last (augmentation); mapped back by to_original

    @property
    def crop_box(self) -> tuple[int, int, int, int]:
        """The crop as (top, left, height, width), the whole image when no crop was applied."""
        return self.crop if self.crop is not None else (0, 0, *self.original_size)

    @property
    def scale(self) -> tuple[float, float]:
        """Output pixels per original pixel along (rows, cols)."""
        _, _, ch, cw = self.crop_box
        rh, rw = self.resized_size if self.resized_size is not None else (ch, cw)
        return rh / ch, rw / cw

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) of the tensor the network sees."""
        _, _, ch, cw = self.crop_box
        rh, rw = self.resized_size if self.resized_size is not None else (ch, cw)
        top, bottom, left, right = self.pad
        return rh + top + bottom, rw + left + right

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Map (row, col) points ``[..., 2]`` on the network input to original-image coordinates."""
        p = np.asarray(points, dtype=np.float64).copy()
        if self.flipped:
            p[..., 1] = self.output_size[1] - p[..., 1]
        top, left, _, _ = self.crop_box
        sy, sx = self.scale
        p[..., 0] = (p[..., 0] - self.pad[0]) / sy + top
        p[..., 1] = (p[..., 1] - self.pad[2]) / sx + left
        return p

    def from_original(self, points: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_original`: original (row, col) -> network-input (row, col)."""
        p = np.asarray(points, dtype=np.float64).copy()
        top, left, _, _ = self.crop_box
        sy, sx = self.scale
        p[..., 0] = (p[..., 0] - top) * sy + self.pad[0]
        p[..., 1] = (p[..., 1] - left) * sx + self.pad[2]
        if self.flipped:
            p[..., 1] = self.output_size[1] - p[..., 1]
        return p

    def to_dict(self) -> dict[str, object]:
        return {
            "original_size": list(self.original_size),
            "crop": None if self.crop is None else list(self.crop),
            "resized_size": None if self.resized_size is None else list(self.resized_size),
            "pad": list(self.pad),
            "flipped": self.flipped,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Geometry:
        def tup(key: str) -> tuple[int, ...] | None:
            value = data.get(key)
            return None if value is None else tuple(int(v) for v in value)  # type: ignore[attr-defined]

        return cls(
            original_size=tup("original_size"),  # type: ignore[arg-type]
            crop=tup("crop"),  # type: ignore[arg-type]
            resized_size=tup("resized_size"),  # type: ignore[arg-type]
            pad=tup("pad") or (0, 0, 0, 0),  # type: ignore[arg-type]
            flipped=bool(data.get("flipped", False)),
        )


@dataclass
class EncoderOutput:
    """What an encoder tower returns for a batch of B inputs.

    ``tokens`` are the features the pooled vector summarises, laid out row-major on ``grid`` (for an X-ray the
    (h, w) patch grid; for a lead x time ECG transformer (12, T / P); for text (L,)). ``token_stride`` says how
    many input units one grid cell spans along each axis, ``token_centre`` where the first cell's centre lies and
    ``input_size`` the input extent, so a token map can be laid back onto the input (then through
    :class:`Geometry` onto the original image): cell ``i`` is centred at ``token_centre + i * token_stride``.
    """

    pooled: Tensor  # [B, F]
    tokens: Tensor | None = None  # [B, N, F], N = prod(grid)
    token_mask: Tensor | None = None  # [B, N] bool: tokens token-level losses read (not padding; text: word_tokens)
    grid: tuple[int, ...] | None = None  # e.g. (h, w) for X-ray, (leads, time_patches) for ECG, (L,) for text
    grid_axes: tuple[str, ...] = ()  # names of the grid axes, e.g. ("row", "col"), ("lead", "time"), ("token",)
    token_stride: tuple[int, ...] | None = None  # input units per grid cell along each axis, e.g. (16, 16)
    # input coordinate of cell 0's centre per axis (input unit n spans [n, n + 1)); None: half a stride, the centre
    # of a patch [0, stride). A CNN of "same"-padded strided layers centres cell i on unit i * stride: 0.5
    token_centre: tuple[float, ...] | None = None
    input_size: tuple[int, ...] | None = None  # spatial/temporal size of the input, e.g. (224, 224), (12, 5000)

    def token_map(self) -> Tensor:
        """Tokens reshaped onto their grid: ``[B, *grid, F]``."""
        if self.tokens is None or self.grid is None:
            raise ValueError("this encoder output has no token grid")
        return self.tokens.reshape(self.tokens.shape[0], *self.grid, self.tokens.shape[-1])

    def with_features(self, pooled: Tensor, tokens: Tensor | None) -> EncoderOutput:
        """A copy with new features (e.g. after a projection head) and the same layout."""
        return replace(self, pooled=pooled, tokens=tokens)


@dataclass
class TokenizedText:
    """Token ids and attention mask of a batch of texts, padded on either side."""

    input_ids: Tensor  # [B, L] int64
    attention_mask: Tensor  # [B, L] int64, 1 = real token
    # [B, L] int64: the sentence of each token (0, 1, ...; -1 for special tokens and padding), set by towers whose
    # tokens are sentences (text_hf token_units: sentences)
    sentence_ids: Tensor | None = None

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def select(self, index: Tensor) -> TokenizedText:
        """Rows ``index`` (an int64 index or a bool mask ``[B]``)."""
        ids = None if self.sentence_ids is None else self.sentence_ids[index]
        return TokenizedText(self.input_ids[index], self.attention_mask[index], ids)

    def to(self, device: torch.device | str) -> TokenizedText:
        ids = None if self.sentence_ids is None else self.sentence_ids.to(device)
        return TokenizedText(self.input_ids.to(device), self.attention_mask.to(device), ids)


ModalityInput = Tensor | TokenizedText | list[str]


class Sample(TypedDict, total=False):
    """One study as a dataset returns it; an absent key means the modality is missing for that study."""

    id: str
    cxr: Tensor  # [1, H, W] float32
    cxr_geometry: Geometry
    ecg: Tensor  # [12, T] float32, standard lead order
    report: str
    labels: Tensor  # [K] float32, NaN = unknown


@dataclass
class Batch:
    """A collated batch: one input per modality plus a presence mask per modality.

    Rows whose modality is missing still hold a placeholder (zeros, or an empty string) so that every input has
    B rows; ``present[m][i]`` says whether row i's input for modality m is real. A modality no row has is simply
    absent from ``inputs``.
    """

    inputs: dict[str, ModalityInput]
    present: dict[str, Tensor]  # {modality: [B] bool}
    ids: list[str] = field(default_factory=list)
    labels: Tensor | None = None  # [B, K] float32, NaN = unknown

    def __post_init__(self) -> None:
        sizes = {m: _rows(x) for m, x in self.inputs.items()}
        sizes.update({f"present[{m}]": int(p.shape[0]) for m, p in self.present.items()})
        if len(set(sizes.values())) > 1:
            raise ValueError(f"batch inputs disagree on the number of rows: {sizes}")
        missing = set(self.inputs) - set(self.present)
        for m in missing:  # a modality given without a mask is present in every row
            self.present[m] = torch.ones(_rows(self.inputs[m]), dtype=torch.bool)

    @property
    def size(self) -> int:
        return next(iter({_rows(x) for x in self.inputs.values()}), 0)

    @property
    def modalities(self) -> list[str]:
        return list(self.inputs)

    def to(self, device: torch.device | str) -> Batch:
        def move(x: ModalityInput) -> ModalityInput:
            return x if isinstance(x, list) else x.to(device)

        return Batch(
            inputs={m: move(x) for m, x in self.inputs.items()},
            present={m: p.to(device) for m, p in self.present.items()},
            ids=list(self.ids),
            labels=None if self.labels is None else self.labels.to(device),
        )


def select_rows(x: ModalityInput, index: Tensor) -> ModalityInput:
    """Rows ``index`` (int64 indices) of any modality input."""
    if isinstance(x, list):
        return [x[i] for i in index.tolist()]
    if isinstance(x, TokenizedText):
        return x.select(index)
    return x[index]


def _rows(x: ModalityInput | Sequence[str]) -> int:
    return len(x) if isinstance(x, list | TokenizedText) else int(x.shape[0])  # type: ignore[union-attr]
