"""Phrase-grounding metrics on similarity maps (:mod:`medclr.eval.grounding_maps`) in original pixels or ECG
samples; evaluation: :mod:`medclr.eval.grounding`.

Metrics (on maps in original pixels; ``G`` = union of the phrase's boxes, pixel centres inside a box):

* **CNR** ``= (mean_G - mean_notG) / sqrt(var_G + var_notG)`` (population variances; Boecking et al., 2022). Signed:
  a map that lights up outside the boxes scores below 0. No threshold is needed.
* **Pointing game** (Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016): 1 if the map's
  maximum (first in row-major order on ties) lies in ``G``, else 0. Chance is the box area fraction. This strict
  form is the project's protocol (PROTOCOLS.md: "the map's maximum lies inside a box") and ``pointing_game``.
  Zhang et al. scored a hit within **15 pixels** of an annotated object, to absorb annotation slack (TorchRay's
  pointing-game benchmark keeps that default): ``pointing_game@15px`` (:func:`near_region`), whose chance is the
  share of pixels within the tolerance of ``G``. 15 px is ~1/40 of a 576 px synthetic X-ray and ~1/200 of an
  MS-CXR image; on a 16 x 16 token grid it is under half a cell, so the tolerant game forgives maps that peak at a
  box's edge, not maps that peak elsewhere.
* **mIoU** (our definition; papers differ): the map is min-max normalised per image-phrase to ``[0, 1]`` and
  ``mIoU = mean over tau in {0.3, 0.4, 0.5, 0.6, 0.7} of |{M >= tau} & G| / |{M >= tau} | G|``. BioViL thresholds
  the *raw* cosine at {0.1, ..., 0.5}; raw cosines sit in a range that depends on the model and the loss (a Symile
  model is never trained on pairwise cosines), so a raw threshold measures calibration as much as localisation. Min-max
  normalising makes the score invariant to any increasing affine rescaling of the map, and thresholds symmetric
  about the middle of the range do not favour spread or peaked maps. ``miou/biovil`` (raw map, BioViL thresholds)
  is reported too, for comparison with the published anchors (BioViL 0.229, BioViL-T 0.240).

ECG grounding (the synthetic world's ``truth.csv`` column ``ecg_findings``: the abnormal leads and beat segments of
each MI / STTC, :func:`medclr.synth.ecg.ecg_findings`): on a ``[12, T]`` map, the lead pointing game (the map's
maximum is on an abnormal lead), the segment pointing game (its time lies in an abnormal segment), the lead AUROC
(leads ranked by their maximum, abnormal = positive; the Mann-Whitney statistic, ties count 1/2) and the CNR of the
abnormal leads x segments region. An ECG encoder with no lead axis (``ecg_resnet1d``) gives one time profile,
broadcast to every lead: its lead metrics are NaN (a maximum on "lead I" would mean nothing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from medclr.io.leads import STANDARD_LEADS

Boxes = Sequence[Sequence[float]]  # [[x, y, w, h], ...] in pixels, top-left origin (MS-CXR convention)
POINTING_TOLERANCE_PX = 15.0  # Zhang et al. (2016)'s pointing-game tolerance, in original pixels
MIOU_THRESHOLDS: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)  # on the min-max normalised map
BIOVIL_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)  # on the raw cosine map (Boecking et al., 2022)
_VAR_FLOOR = 1e-12  # CNR's denominator floor: a map constant inside and outside the boxes would divide by 0


def boxes_mask(shape: tuple[int, int], boxes: Boxes) -> np.ndarray:
    """Bool ``[H, W]``: pixels whose centre ``(c + 1/2, r + 1/2)`` lies in a box ``[x, y, w, h]`` (x <= . < x + w)."""
    mask = np.zeros(shape, dtype=bool)
    for x, y, w, h in boxes:
        r0, r1 = (max(0, min(shape[0], math.ceil(v - 0.5))) for v in (y, y + h))
        c0, c1 = (max(0, min(shape[1], math.ceil(v - 0.5))) for v in (x, x + w))
        mask[r0:r1, c0:c1] = True
    return mask


def _region(sim_map: np.ndarray, region: Boxes | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inside, valid) bool masks of the map's shape; ``region`` is boxes or a bool mask."""
    if isinstance(region, np.ndarray) and region.dtype == bool:
        if region.shape != sim_map.shape:
            raise ValueError(f"mask shape {region.shape} differs from the map's {sim_map.shape}")
        inside = region
    else:
        inside = boxes_mask(sim_map.shape, region)  # type: ignore[arg-type]
    valid = np.isfinite(sim_map)
    return inside & valid, valid


def cnr(sim_map: np.ndarray, region: Boxes | np.ndarray) -> float:
    """Contrast-to-noise ratio ``(mean_in - mean_out) / sqrt(var_in + var_out)``, in = the union of the boxes (or a
    bool mask), out = the other finite pixels, population variances (denominator floored at 1e-12). NaN when
    either side is empty.

    >>> cnr(np.array([[0.0, 0.0], [2.0, 4.0]]), np.array([[False, False], [True, True]]))  # (3 - 0) / sqrt(1 + 0)
    3.0
    """
    inside, valid = _region(sim_map, region)
    outside = valid & ~inside
    if not inside.any() or not outside.any():
        return math.nan
    a, b = sim_map[inside].astype(np.float64), sim_map[outside].astype(np.float64)
    return float((a.mean() - b.mean()) / math.sqrt(max(a.var() + b.var(), _VAR_FLOOR)))


def near_region(inside: np.ndarray, tolerance: float) -> np.ndarray:
    """Bool mask of the pixels whose centre lies within ``tolerance`` pixels (Euclidean, centre to centre) of a pixel
    of ``inside [H, W]``; ``inside`` itself for a tolerance of 0 or an empty region.

    >>> near_region(np.eye(1, 5, 2, dtype=bool), 1.0).astype(int).tolist()
    [[0, 1, 1, 1, 0]]
    """
    if tolerance <= 0 or not inside.any():
        return inside
    from scipy.ndimage import distance_transform_edt

    reach = math.floor(tolerance)  # only a window around the region can be near it
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    r0, r1 = max(0, rows[0] - reach), min(inside.shape[0], rows[-1] + reach + 1)
    c0, c1 = max(0, cols[0] - reach), min(inside.shape[1], cols[-1] + reach + 1)
    near = np.zeros_like(inside)
    near[r0:r1, c0:c1] = distance_transform_edt(~inside[r0:r1, c0:c1]) <= tolerance  # distance to the region
    return near


def pointing_game_key(tolerance: float) -> str:
    """The key of the pointing game with ``tolerance`` pixels: ``pointing_game`` (0), ``pointing_game@15px`` (15)."""
    return f"pointing_game@{tolerance:g}px" if tolerance > 0 else "pointing_game"


def pointing_game(sim_map: np.ndarray, region: Boxes | np.ndarray, tolerance: float = 0.0) -> float:
    """1.0 if the map's maximum (first in row-major order on ties; NaN pixels ignored) lies in a box, or within
    ``tolerance`` pixels of one (Zhang et al.'s 15: :data:`POINTING_TOLERANCE_PX`), else 0.0."""
    inside, valid = _region(sim_map, region)
    if not valid.any():
        return math.nan
    return float(near_region(inside, tolerance).flat[int(np.nanargmax(np.where(valid, sim_map, np.nan)))])


def miou(sim_map: np.ndarray, region: Boxes | np.ndarray, thresholds: Sequence[float] = MIOU_THRESHOLDS, *,
         normalize: bool = True) -> float:
    """Mean over ``thresholds`` of IoU(``{M >= tau}``, boxes), ``M`` = the map min-max normalised to [0, 1] over its
    finite pixels (``normalize=False``: the raw map, as BioViL with :data:`BIOVIL_THRESHOLDS`). A constant map
    normalises to 0 everywhere. NaN when the boxes cover no finite pixel.
    """
    inside, valid = _region(sim_map, region)
    if not inside.any():
        return math.nan
    m = np.where(valid, sim_map, np.nan).astype(np.float64)
    if normalize:
        lo, hi = float(np.nanmin(m)), float(np.nanmax(m))
        m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    ious = []
    for tau in thresholds:
        pred = valid & (np.nan_to_num(m, nan=-np.inf) >= tau)
        ious.append((pred & inside).sum() / (pred | inside).sum())
    return float(np.mean(ious))


def _lead_index(leads: Sequence[str | int]) -> np.ndarray:
    """Row indices of leads given by standard name (``"V2"``) or index."""
    unknown = [x for x in leads if isinstance(x, str) and x not in STANDARD_LEADS]
    if unknown:
        raise ValueError(f"unknown lead name(s) {unknown}; expected {', '.join(STANDARD_LEADS)}")
    return np.array([STANDARD_LEADS.index(x) if isinstance(x, str) else int(x) for x in leads], dtype=np.int64)


def ecg_pointing_game_lead(sim_map: np.ndarray, leads: Sequence[str | int]) -> float:
    """1.0 if the maximum of the ``[12, T]`` map lies on one of ``leads`` (names or indices), else 0.0."""
    lead = int(np.nanargmax(sim_map)) // sim_map.shape[1]
    return float(lead in set(_lead_index(leads).tolist()))


def ecg_pointing_game_segment(sim_map: np.ndarray, time_mask: np.ndarray) -> float:
    """1.0 if the time of the ``[12, T]`` map's maximum lies in an abnormal segment (``time_mask [T]``), else 0.0."""
    return float(time_mask[int(np.nanargmax(sim_map)) % sim_map.shape[1]])


def ecg_lead_auroc(sim_map: np.ndarray, leads: Sequence[str | int]) -> float:
    """Probability that an abnormal lead outranks a normal one, leads scored by their maximum over time (ties 1/2);
    NaN when every lead or none is abnormal.

    >>> m = np.zeros((12, 4)); m[6, 0], m[7, 1], m[0, 2] = 0.9, 0.5, 0.7
    >>> ecg_lead_auroc(m, ["V1", "V2"])  # V1 beats all 10; V2 beats 9, loses to I
    0.95
    """
    score = np.nanmax(sim_map, axis=1)  # [12]
    positive = np.zeros(len(score), dtype=bool)
    positive[_lead_index(leads)] = True
    pos, neg = score[positive], score[~positive]
    if not len(pos) or not len(neg):
        return math.nan
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def segments_mask(n_samples: int, segments_s: Sequence[Sequence[float]], fs: float, offset_s: float = 0.0
                  ) -> np.ndarray:
    """Bool ``[T]``: samples whose time ``offset_s + k / fs`` lies in a segment ``[t0, t1)`` (seconds)."""
    t = offset_s + np.arange(n_samples) / fs
    mask = np.zeros(n_samples, dtype=bool)
    for t0, t1 in segments_s:
        mask |= (t >= t0) & (t < t1)
    return mask
