"""Phrase-grounding similarity maps: a phrase's score on each projected token of an X-ray or an ECG, laid onto
the original pixels (or samples). The metrics on these maps: :mod:`medclr.eval.grounding_metrics`; evaluation:
:mod:`medclr.eval.grounding`.

The similarity map (BioViL; Boecking et al., "Making the Most of Text Semantics to Improve Biomedical
Vision-Language Processing", ECCV 2022, which also released the MS-CXR boxes used here). A tower's tokens went
through the same projection head as its pooled vector (:meth:`medclr.models.MedClr.encode_tokens`), so each token
lives in the shared space. With unit token vectors ``v_ij`` on the token grid and a unit phrase embedding ``t``::

    S[i, j] = cos(v_ij, t) = v_ij . t          in [-1, 1], one value per grid cell

**Which score.** A phrase and one token are a *pair*, whatever the training loss: for ConVIRT/CLIP the pair score is
the cosine; Symile's multilinear inner product of two vectors *is* their dot product (the cosine for unit vectors);
GRAM's volume of two unit vectors is ``sqrt(1 - cos^2)``, which forgets the sign (a token pointing *away* from the
phrase would score like one pointing at it), so a signed score is used for every objective. Which signed score
depends on how the tower pools (:func:`map_kind`):

* ``contribution`` (class activation mapping; Zhou et al., "Learning Deep Features for Discriminative
  Localization", CVPR 2016): when the pooled vector is the *mean* of the tokens and the head is linear (CNN feature
  maps, mean-pooled transformers), the image's own score decomposes exactly over the grid. With projected tokens
  ``u_ij`` (not normalised), ``N`` cells and pooled ``p = mean_ij u_ij``::

      M[i, j] = u_ij . t / |p|          mean_ij M[i, j] = p . t / |p| = cos(p, t)

  so the map shows where the cosine that zero-shot diagnosis and retrieval use comes from. A per-token cosine
  would instead rate a low-norm token (one that barely moves ``p``, such as a cell over the zero-padded border) by
  its direction alone: on a mean-pooled CNN trained on the demo world it lit the image borders (pointing game
  0.06 vs 0.16 with contributions).
* ``cosine`` (BioViL): otherwise (a [CLS]-pooled transformer's patch tokens never form the pooled vector), with
  unit tokens ``v_ij``: ``S[i, j] = cos(v_ij, t)`` in [-1, 1].

Either readout can be asked for (``readout``): ``cosine`` on any tower, ``contribution`` only where the score
decomposes; ``auto`` picks as above and is what these functions and the app's Ground page default to (their maps
explain the score the app shows). ``medclr eval --task grounding`` reads ``cosine`` maps by default, MS-CXR's
protocol as BioViL published it (``--grounding-map`` chooses). Neither readout points better on every model: on the
demo recipe's mean-pooled CNN, trained with GLoRIA's local term on unit tokens, cosine maps pointed better than
contributions on some seeds and worse on others (README, Results), where an early CNN without the local term had
its cosine maps light the borders.

**Smoothing** (optional, ``smooth`` = sigma in token-grid cells; 0, the default, leaves the grid as it is). BioViL's
reference inference engine (hi-ml-multimodal, ``ImageTextInferenceEngine``) blurs the cosine grid with a Gaussian
of sigma 1.5 cells (:data:`BIOVIL_SMOOTHING_SIGMA`; mirrored at the grid's edges) before it upsamples it; PROTOCOLS.md
states the map without it. ``smooth`` does the same on either readout, on the grid, before the upsampling below
(a contribution map's mean is then the cosine only up to the edge terms of the blur).

**Onto the original pixels.** Cell ``i`` of a grid with stride ``s`` is centred at input coordinate ``c + i s``
(:class:`TokenLayout`): ``c = s / 2`` for patches ``[i s, (i + 1) s)`` (ViT), ``c = 1/2`` for a CNN of "same"-padded
strided layers, whose cell ``i`` is centred on input pixel ``i s`` (half a cell earlier than a patch; see
:func:`medclr.models.encoders.cxr.feature_map_output`). The map is read as a bilinear surface through the cell
centres (edge values held constant beyond the outer centres), and each original pixel centre ``p`` takes its value
at the grid coordinate ``g = (from_original(p) - c) / s`` where
:meth:`medclr.types.Geometry.from_original` applies the recorded crop -> resize -> pad. This is the exact
composition of "upsample bilinearly to the network input, then undo the pad and the resize", evaluated once (no
second resampling). Pixels outside a recorded crop are NaN (as in BioViL's inference engine) and every metric
ignores NaN pixels. The geometry is axis-aligned, so the map is ``R @ S @ C^T`` with interpolation matrices
``R [H0, h]`` and ``C [W0, w]``. ECG maps do the same along time only (lead x time-patch grid -> ``[12, T]``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor, nn

from medclr.errors import MedclrInputError
from medclr.models.model import MedClr
from medclr.types import EncoderOutput, Geometry


def _linear_weights(coords: np.ndarray, size: int) -> np.ndarray:
    """``[n, size]`` weights that read a length-``size`` grid linearly at grid coordinates ``coords`` (clamped)."""
    c = np.clip(np.asarray(coords, dtype=np.float64), 0.0, size - 1)
    weights = np.zeros((c.size, size))
    if size == 1:
        weights[:, 0] = 1.0
        return weights
    lo = np.minimum(np.floor(c).astype(np.int64), size - 2)
    frac = c - lo
    rows = np.arange(c.size)
    weights[rows, lo] = 1.0 - frac
    weights[rows, lo + 1] += frac
    return weights


@dataclass(frozen=True)
class TokenLayout:
    """Where a token grid lies on the network input: along axis ``a``, cell ``i`` is centred at input coordinate
    ``centre[a] + i * stride[a]`` (input unit n spans [n, n + 1))."""

    stride: tuple[float, ...]
    centre: tuple[float, ...]

    @classmethod
    def patches(cls, stride: Sequence[float]) -> TokenLayout:
        """Non-overlapping patches ``[i s, (i + 1) s)``: centres at ``(i + 1/2) s``."""
        return cls(tuple(float(s) for s in stride), tuple(float(s) / 2 for s in stride))

    @classmethod
    def of(cls, out: EncoderOutput) -> TokenLayout:
        """The layout an encoder output records (``token_stride``, ``token_centre``); without a stride, the grid is
        taken to tile ``input_size`` evenly; without a centre, cells are patches."""
        if out.grid is None:
            raise ValueError("this encoder gives no token grid; grounding needs one")
        if out.token_stride is not None:
            stride = tuple(float(s) for s in out.token_stride)
        elif out.input_size is not None:
            stride = tuple(i / g for i, g in zip(out.input_size[-len(out.grid):], out.grid, strict=True))
        else:
            raise ValueError("the encoder output records neither token_stride nor input_size")
        centre = tuple(float(c) for c in out.token_centre) if out.token_centre is not None else None
        return cls(stride, centre) if centre is not None else cls.patches(stride)

    def grid_coords(self, coords: np.ndarray, axis: int = 0) -> np.ndarray:
        """Input coordinates along ``axis`` -> grid coordinates (cell ``i``'s centre -> ``i``)."""
        return (np.asarray(coords, dtype=np.float64) - self.centre[axis]) / self.stride[axis]


def _as_layout(layout: TokenLayout | Sequence[float]) -> TokenLayout:
    return layout if isinstance(layout, TokenLayout) else TokenLayout.patches(layout)


def _cxr_interpolation(grid: tuple[int, int], layout: TokenLayout | Sequence[float], geometry: Geometry
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``R [H0, h]``, ``C [W0, w]`` (a grid map ``S`` reads ``R @ S @ C^T`` in original pixels) and the bool masks
    ``[H0]``, ``[W0]`` of the rows and columns inside the recorded crop (module docstring: the maths)."""
    h0, w0 = geometry.original_size
    rows, cols = np.arange(h0) + 0.5, np.arange(w0) + 0.5  # original pixel centres
    net_r = geometry.from_original(np.stack([rows, np.zeros_like(rows)], axis=-1))[:, 0]  # [H0] network rows
    net_c = geometry.from_original(np.stack([np.zeros_like(cols), cols], axis=-1))[:, 1]  # [W0] network cols
    lay = _as_layout(layout)
    r = _linear_weights(lay.grid_coords(net_r, 0), grid[0])  # [H0, h]
    c = _linear_weights(lay.grid_coords(net_c, 1), grid[1])  # [W0, w]
    top, left, ch, cw = geometry.crop if geometry.crop is not None else (0, 0, h0, w0)
    return r, c, (rows >= top) & (rows < top + ch), (cols >= left) & (cols < left + cw)


def cxr_grid_to_original(sim_grid: np.ndarray, layout: TokenLayout | Sequence[float], geometry: Geometry
                         ) -> np.ndarray:
    """A token-grid map ``[h, w]`` -> float32 ``[H0, W0]`` in original pixels (module docstring: the maths);
    ``layout``: the grid's :class:`TokenLayout`, or a bare stride for patch centres."""
    r, c, row_ok, col_ok = _cxr_interpolation(sim_grid.shape, layout, geometry)
    out = (r @ np.asarray(sim_grid, dtype=np.float64) @ c.T).astype(np.float32)  # [H0, W0]
    out[~row_ok, :] = np.nan  # pixels the network never saw (outside a recorded crop)
    out[:, ~col_ok] = np.nan
    return out


def cxr_grid_peaks(grid: tuple[int, int], layout: TokenLayout | Sequence[float], geometry: Geometry) -> np.ndarray:
    """Bool ``[H0, W0]``: the original pixels where a map on this token grid can have its maximum.

    A grid map's surface is bilinear between cell centres, so its maximum sits at a cell centre: for a map that is
    1 at cell ``(i, j)`` and 0 elsewhere it is ``R[:, i] C[:, j]^T`` (non-negative), whose first maximum in
    row-major order (the pointing game's tie rule) is at ``(argmax R[:, i], argmax C[:, j])``, the original pixel
    of that centre. Any other map peaks at one of these pixels or a pixel next to one (pixel centres rarely fall
    exactly on a cell centre), so a box holding none of them is hit only at its edge, by luck.
    """
    r, c, row_ok, col_ok = _cxr_interpolation(grid, layout, geometry)
    peak_rows = np.argmax(np.where(row_ok[:, None], r, -1.0), axis=0)  # [h], first maximum of each column
    peak_cols = np.argmax(np.where(col_ok[:, None], c, -1.0), axis=0)  # [w]
    peaks = np.zeros(geometry.original_size, dtype=bool)
    peaks[np.ix_(peak_rows, peak_cols)] = True
    return peaks


def ecg_grid_to_signal(sim_grid: np.ndarray, out: EncoderOutput, n_leads: int = 12) -> np.ndarray:
    """A token-grid map (``(lead, time)`` or ``(time,)``) -> float32 ``[n_leads, T]`` on the ECG's samples.

    Time patch ``j`` covers samples ``[j P, (j + 1) P)``; sample ``k`` reads the time profile at grid coordinate
    ``(k + 1/2) / P - 1/2``. A ``(time,)`` grid (no lead axis) is broadcast to every lead.
    """
    if out.input_size is None:
        raise ValueError("the ECG encoder output records no input_size")
    length = int(out.input_size[-1])
    t = _linear_weights(TokenLayout.of(out).grid_coords(np.arange(length) + 0.5, -1), sim_grid.shape[-1])  # [T, n]
    if out.grid_axes == ("lead", "time"):
        return (np.asarray(sim_grid, dtype=np.float64) @ t.T).astype(np.float32)  # [12, T]
    if out.grid_axes == ("time",):
        profile = (t @ np.asarray(sim_grid, dtype=np.float64)).astype(np.float32)  # [T]
        return np.broadcast_to(profile, (n_leads, length)).copy()
    raise ValueError(f"cannot lay an ECG map on grid axes {out.grid_axes}")


@contextmanager
def _eval_mode(model: MedClr) -> Iterator[None]:
    """Eval mode without gradients for the block; the model's previous mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


MapKind = Literal["contribution", "cosine"]
MapReadout = Literal["auto", "contribution", "cosine"]
MAP_READOUTS: tuple[MapReadout, ...] = ("auto", "contribution", "cosine")
BIOVIL_SMOOTHING_SIGMA = 1.5  # cells: the Gaussian BioViL's reference engine blurs its cosine grid with
MAP_LABELS: dict[MapKind, str] = {"contribution": "contribution to the cosine (map mean = cosine)",
                                  "cosine": "cosine similarity"}
MAP_DESCRIPTIONS: dict[MapKind, str] = {
    "contribution": "contribution maps (CAM: the tower mean-pools its tokens and projects linearly; projected token "
                    ". unit phrase / |pooled|, whose grid mean is the image-phrase cosine)",
    "cosine": "cosine of the unit phrase embedding with each projected unit token (BioViL)"}


def map_readouts(model: MedClr, modality: str) -> tuple[MapReadout, ...]:
    """The readouts ``modality``'s tower supports: all three when it pools by the mean of its tokens and projects
    linearly (its score decomposes over the grid), else ``auto`` and ``cosine``."""
    tower = model.tower(modality)
    return MAP_READOUTS if tower.encoder.pools_by_mean and isinstance(tower.head, nn.Linear) else ("auto", "cosine")


def map_kind(model: MedClr, modality: str, readout: MapReadout = "auto") -> MapKind:
    """The maps ``modality``'s tower gives with ``readout`` (module docstring): ``auto`` is ``contribution`` when the
    tower pools by the mean of its tokens and projects linearly (the score then decomposes over the grid), else
    ``cosine``. Raises MedclrInputError for ``contribution`` on a tower whose score does not decompose (one that
    :func:`map_readouts` does not list it for), ValueError for an unknown readout."""
    if readout not in MAP_READOUTS:
        raise ValueError(f"unknown grounding map readout {readout!r}; choose one of {', '.join(MAP_READOUTS)}")
    decomposes = "contribution" in map_readouts(model, modality)
    if readout == "contribution" and not decomposes:
        raise MedclrInputError(None, f"contribution maps need a tower that mean-pools its tokens and projects "
                               f"linearly; the {modality} tower does not, so its score does not decompose over the "
                               "grid", "use the cosine readout (medclr eval --grounding-map cosine) or auto")
    if readout == "auto":
        return "contribution" if decomposes else "cosine"
    return readout


def _token_grids(model: MedClr, modality: str, x: Tensor, readout: MapReadout = "auto"
                 ) -> tuple[EncoderOutput, Tensor]:
    """Encoder output and its tokens on the grid ``[B, *grid, D]``, scaled for :func:`map_kind`: divided by the
    pooled vector's norm (contribution) or unit length (cosine); a dot with a unit phrase gives the map."""
    kind = map_kind(model, modality, readout)  # checked before the forward pass
    with _eval_mode(model):
        out = model.encode_tokens(modality, x, normalize=False)
    if out.tokens is None or out.grid is None:
        raise ValueError(f"the {modality} encoder gives no token grid; grounding needs one")
    tokens = out.token_map().float()  # [B, *grid, D]
    if kind == "cosine":
        return out, F.normalize(tokens, dim=-1)
    norm = out.pooled.float().norm(dim=-1).clamp(min=1e-12)  # [B]
    return out, tokens / norm.reshape(-1, *([1] * (tokens.ndim - 1)))


def _unit(phrase_emb: Tensor, device: torch.device) -> Tensor:
    return F.normalize(phrase_emb.detach().float().to(device).reshape(-1, phrase_emb.shape[-1]), dim=-1)  # [P, D]


def _check_sigma(sigma: float) -> None:
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"map smoothing sigma must be a finite number of grid cells >= 0, got {sigma}")


def smooth_grid(grid: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of sigma ``sigma`` cells over the last two axes of ``grid [..., h, w]`` (the map's rows and
    columns; leading axes, such as phrases, stay apart), edges mirrored (scipy's ``reflect``, as BioViL's engine);
    ``sigma`` 0 returns ``grid`` unchanged. Raises ValueError for a negative or non-finite sigma."""
    _check_sigma(sigma)
    if sigma == 0:
        return grid
    blurred: np.ndarray = ndimage.gaussian_filter(grid, sigma=(0.0,) * (grid.ndim - 2) + (sigma, sigma),
                                                  mode="reflect")
    return blurred


def cxr_similarity_grids(model: MedClr, images: Tensor, phrase_embs: Tensor | Sequence[Tensor],
                         readout: MapReadout = "auto", smooth: float = 0.0) -> tuple[list[np.ndarray], TokenLayout]:
    """Score maps (:func:`map_kind`) on the token grid: ``images [B, 1, S, S]`` and one ``[P, D]`` tensor of
    phrases for every image (or one ``[P_b, D]`` per image) -> B float32 ``[P_b, h, w]``, and where the grid lies
    on the input (:class:`TokenLayout`). ``smooth``: :func:`smooth_grid`'s sigma in cells (0: none)."""
    _check_sigma(smooth)  # before the forward pass
    out, tokens = _token_grids(model, "cxr", images, readout)  # tokens: [B, h, w, D]
    per_image = [phrase_embs] * tokens.shape[0] if isinstance(phrase_embs, Tensor) else list(phrase_embs)
    if len(per_image) != tokens.shape[0]:
        raise ValueError(f"{tokens.shape[0]} images but {len(per_image)} sets of phrases")
    grids = [smooth_grid(torch.einsum("hwd,pd->phw", tokens[b], _unit(phrases, tokens.device)).cpu().numpy(),
                         smooth)  # [P, h, w]
             for b, phrases in enumerate(per_image)]
    return grids, TokenLayout.of(out)


def cxr_similarity_maps(model: MedClr, images: Tensor, geometries: Sequence[Geometry],
                        phrase_embs: Tensor | Sequence[Tensor], readout: MapReadout = "auto", smooth: float = 0.0
                        ) -> list[np.ndarray]:
    """Batch form of :func:`cxr_similarity_map`: ``images [B, 1, S, S]``, one Geometry per image, and either one
    ``[P, D]`` tensor of phrases for every image or one ``[P_b, D]`` per image -> B float32 ``[P_b, H0, W0]``.
    Full-resolution maps are large (a 3000 x 2500 X-ray: 30 MB per phrase); evaluation maps one phrase at a time
    from :func:`cxr_similarity_grids`."""
    grids, layout = cxr_similarity_grids(model, images, phrase_embs, readout, smooth)
    if len(geometries) != len(grids):
        raise ValueError(f"{len(grids)} images but {len(geometries)} geometries")
    maps = []
    for sims, geometry in zip(grids, geometries, strict=True):  # sims: [P_b, h, w]
        mapped = [cxr_grid_to_original(s, layout, geometry) for s in sims]
        maps.append(np.stack(mapped) if mapped else np.zeros((0, *geometry.original_size), np.float32))
    return maps


def cxr_similarity_map(model: MedClr, image: Tensor, geometry: Geometry, phrase_emb: Tensor,
                       readout: MapReadout = "auto", smooth: float = 0.0) -> np.ndarray:
    """The score map (:func:`map_kind`) of ``phrase_emb [D]`` on the projected patch tokens of ``image``
    (``[1, S, S]`` or ``[1, 1, S, S]``, preprocessed as in training), as float32 ``[H0, W0]`` in the original
    image's pixels (``geometry``); ``smooth``: :func:`smooth_grid`'s sigma in cells (0: none)."""
    x = image if image.ndim == 4 else image[None]  # [1, 1, S, S]
    if x.shape[0] != 1:
        raise ValueError(f"one image per call (got {x.shape[0]}); use cxr_similarity_maps for a batch")
    return cxr_similarity_maps(model, x, [geometry], phrase_emb.reshape(1, -1), readout, smooth)[0][0]


def ecg_similarity_maps(model: MedClr, ecgs: Tensor, phrase_embs: Sequence[Tensor], readout: MapReadout = "auto"
                        ) -> tuple[list[np.ndarray], bool]:
    """``ecgs [B, 12, T]`` and one ``[P_b, D]`` per record -> B float32 ``[P_b, 12, T]``, and whether the encoder
    has a lead axis (False: each map is one time profile broadcast to the leads)."""
    out, tokens = _token_grids(model, "ecg", ecgs, readout)  # [B, 12, n, D] or [B, n, D]
    maps = []
    for b, phrases in enumerate(phrase_embs):
        sims = (tokens[b] @ _unit(phrases, tokens.device).T).movedim(-1, 0).cpu().numpy()  # [P, *grid]
        maps.append(np.stack([ecg_grid_to_signal(s, out, ecgs.shape[1]) for s in sims]) if len(sims)
                    else np.zeros((0, *ecgs.shape[1:]), np.float32))
    return maps, "lead" in out.grid_axes


def ecg_similarity_map(model: MedClr, ecg: Tensor, phrase_emb: Tensor, readout: MapReadout = "auto") -> np.ndarray:
    """The score map (:func:`map_kind`) of ``phrase_emb [D]`` on the projected lead x time tokens of
    ``ecg [12, T]`` (preprocessed as in training), as float32 ``[12, T]``; see :func:`ecg_grid_to_signal` for
    encoders without a lead axis."""
    x = ecg if ecg.ndim == 3 else ecg[None]  # [1, 12, T]
    maps, _ = ecg_similarity_maps(model, x, [phrase_emb.reshape(1, -1)], readout)
    return maps[0][0]  # [12, T]
