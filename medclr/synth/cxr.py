"""A chest radiograph phantom: plausible frontal (PA/AP) anatomy, localized findings and their boxes.

The image is built as a projected attenuation map ``A`` (soft tissue + bone + fluid - air, in arbitrary
line-integral units) from smooth implicit shapes evaluated on coordinate grids, then blurred (detector MTF),
given signal-dependent quantum noise, and mapped to a display value in ``[0, 1]`` with a film-like curve:
bright = dense (bone, heart, fluid, metal), dark = air (lungs, outside the body), as a MONOCHROME2 radiograph.

Coordinates
-----------
*Pixels*: ``row`` 0 at the top, ``col`` 0 at the image's left; images are ``[H, W]`` with ``H = size`` and
``W <= H`` (portrait or square).

*Image units*: lengths are fractions of the image height, ``X = (col + 0.5 - W/2) / H`` (0 at the centre column)
and ``Y = (row + 0.5) / H``. The patient frame is the image frame rotated by ``acquisition.rotation_deg``
about ``(0, 0.5)``: ``(Xr, Yr)``.

*Thorax frame*: ``dx = Xr - midline`` (positive = image right) and ``dy = Yr - apex`` (down from the lung
apices). Radiology convention: the patient faces the viewer, so **the patient's right side is on the image's
left** and the heart bulges to the image's right. ``hw`` is the thoracic half-width at the inner rib margins and
``lh`` the apex-to-costophrenic-angle height.

*Side coordinates* (one lung): ``a = s * dx / hw`` with ``s = -1`` for the patient's right and ``+1`` for the
left (0 at the midline, 1 at the lateral rib margin), and ``v = dy / lh`` (0 at the apex, 1 at the
costophrenic angle). Every lung structure is defined in ``(a, v)`` so one code path draws both sides.

Randomness: the anatomy is drawn first from ``rng`` with a fixed number of draws, then one child seed per
finding and one for the noise; so the same seed with and without a finding gives the same patient and the same
noise, and a finding changes only its own region (what the tests check).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from medclr.synth.state import CxrAcquisition, CxrFindings, Incidental, Lobe, Severity, Side

__all__ = ["Box", "CxrRender", "grounding_phrases", "render_cxr", "render_cxr_detailed", "to_stored"]

_SIGN: dict[Side, float] = {"right": -1.0, "left": 1.0}  # image direction of the patient's side (PA convention)
_SIDES: tuple[Side, Side] = ("right", "left")
_LEVEL: dict[Severity, int] = {"mild": 0, "moderate": 1, "severe": 2}
_STREAMS = ("cardiomegaly", "effusion", "pneumothorax", "consolidation", "edema", "atelectasis", "opacity",
            "devices", "noise", "texture", "vessels")
_AIR = 0.80  # attenuation removed per unit of lung air depth
_F = np.float32


@dataclass(frozen=True)
class Box:
    """One finding's box in output pixels (MS-CXR convention: ``x, y`` = top-left corner, ``w, h`` = size)."""

    label: str  # CheXpert name, e.g. "Pleural Effusion"
    x: float
    y: float
    w: float
    h: float
    location: str  # words a report would use: "left base", "right apex", "cardiac silhouette", ...

    @property
    def center(self) -> tuple[float, float]:
        """``(x, y)`` of the box centre in pixels."""
        return self.x + self.w / 2, self.y + self.h / 2


def grounding_phrases(boxes: Sequence[Box]) -> list[tuple[str, list[Box]]]:
    """MS-CXR-style phrases of one X-ray's boxes: ``(phrase, its boxes)``, in the boxes' order. The world writes
    the study's own report sentence about each group's finding in its place
    (:func:`medclr.synth.reports.grounding_phrase`, as MS-CXR's phrases come from the reports); these template
    phrases group the boxes, and are the XOR world's phrases, whose reports place no finding.

    A box's template phrase is ``"<finding> at the <location>"`` (``"pleural effusion at the left base"``), where a
    support device is named as the reports name it (``"endotracheal tube at the trachea"``: "support devices" is
    CheXpert's category, a word no report uses). A finding drawn on both sides (``"left base"`` and ``"right base"``
    boxes of one label) is one phrase with both boxes, ``"pleural effusion at both bases"``, as the reports write it
    ("bilateral pleural effusions", "bibasilar atelectasis", "bilateral perihilar opacities") and as MS-CXR
    annotates such a phrase (Boecking et al., 2022: one phrase, one box per region). The phantom draws both sides
    of a finding alike (one severity), so a phrase naming one side of it would ask a map to choose between two
    identical regions: any map, however good, points at the named side about half of the time.

    >>> b = [Box("Edema", 0, 0, 1, 1, "right perihilar region"), Box("Cardiomegaly", 0, 0, 1, 1, "cardiac silhouette"),
    ...      Box("Edema", 2, 0, 1, 1, "left perihilar region")]
    >>> [(p, len(bs)) for p, bs in grounding_phrases(b)]
    [('edema at both perihilar regions', 2), ('cardiomegaly at the cardiac silhouette', 1)]
    """
    groups: dict[str, list[Box]] = {}
    for box in boxes:
        side, _, rest = box.location.partition(" ")
        mirror = {"left": "right", "right": "left"}.get(side)
        bilateral = mirror is not None and any(o.label == box.label and o.location == f"{mirror} {rest}" for o in boxes)
        what = _DEVICE_AT.get(box.location, "device") if box.label == "Support Devices" else box.label.lower()
        where = f" at both {_plural(rest)}" if bilateral else f" at the {box.location}" if box.location else ""
        groups.setdefault(what + where, []).append(box)
    return list(groups.items())


_DEVICE_AT = {"trachea": "endotracheal tube", "superior vena cava": "central venous catheter",
              "left chest wall": "pacemaker"}  # a device box's location -> the device (see _devices)


def _plural(noun_phrase: str) -> str:
    """``"base"`` -> ``"bases"``, ``"perihilar region"`` -> ``"perihilar regions"``, ``"apex"`` -> ``"apices"``."""
    return noun_phrase[:-2] + "ices" if noun_phrase.endswith("ex") else noun_phrase + "s"


@dataclass
class CxrRender:
    """Everything :func:`render_cxr_detailed` knows about a rendered radiograph."""

    image: np.ndarray  # [H, W] float32 in [0, 1], bright = dense
    boxes: list[Box]  # one per rendered finding
    anatomy: dict[str, Box] = field(default_factory=dict)  # "heart", "right lung", "left lung" (label = key)
    ctr: float = 0.0  # cardiothoracic ratio as drawn (heart width / inner thoracic width)


# ----------------------------------------------------------------------------------------------------------------
# Geometry helpers
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class _Anatomy:
    """One patient's geometry (image units unless noted); drawn by :func:`_sample_anatomy`."""

    height: int
    width: int
    midline: float  # Xr of the spine
    apex: float  # Yr of the lung apices
    hw: float  # thoracic half-width (inner rib margins)
    lh: float  # apex -> costophrenic angle
    rot: float  # radians
    ap: bool
    dome: dict[Side, float]  # v of each hemidiaphragm's top (right higher)
    dome_peak: dict[Side, float]  # a where the dome is highest
    ctr: float  # normal cardiothoracic ratio for this patient
    heart_low: float  # v of the heart's lower border
    rib_curve: float  # curvature of the posterior ribs (v units)
    rib_start: float  # w of the first posterior rib
    rib_span: float  # w range covered by the ribs
    n_ribs: float
    clavicle_v: float  # v of the clavicles' medial ends
    breast: float  # 0..1 breast-shadow strength
    bubble: float  # 0..1 gastric-bubble size
    knob: float  # aortic-knob prominence
    vessel_gain: float
    seeds: dict[str, int]


class _Canvas:
    """The pixel grid and the patient frame: ``dx``, ``dy`` arrays [H, W] (image units, thorax frame)."""

    def __init__(self, anat: _Anatomy) -> None:
        h, w = anat.height, anat.width
        self.anat = anat
        self.h, self.w = h, w
        x = ((np.arange(w, dtype=_F) + 0.5 - w / 2) / h)[None, :]  # [1, W]
        y = ((np.arange(h, dtype=_F) + 0.5) / h)[:, None]  # [H, 1]
        c, s = math.cos(anat.rot), math.sin(anat.rot)
        yc = y - _F(0.5)
        self.dx = (_F(c) * x + _F(s) * yc - _F(anat.midline)).astype(_F)  # [H, W]
        self.dy = (-_F(s) * x + _F(c) * yc + _F(0.5 - anat.apex)).astype(_F)  # [H, W]

    def to_pixel(self, dx: float, dy: float) -> tuple[float, float]:
        """Thorax-frame point -> ``(col, row)`` in pixels (inverse of the rotation)."""
        a = self.anat
        xr, yr = dx + a.midline, dy + a.apex - 0.5
        c, s = math.cos(a.rot), math.sin(a.rot)
        x, y = c * xr - s * yr, s * xr + c * yr + 0.5
        return x * self.h + self.w / 2 - 0.5, y * self.h - 0.5

    def window(self, x0: float, x1: float, y0: float, y1: float, margin: int = 4) -> tuple[slice, slice]:
        """Pixel ``(rows, cols)`` slices covering the thorax-frame rectangle ``[x0, x1] x [y0, y1]``."""
        pts = [self.to_pixel(x, y) for x in (x0, x1) for y in (y0, y1)]
        cols, rows = [p[0] for p in pts], [p[1] for p in pts]
        r0 = max(0, math.floor(min(rows)) - margin)
        r1 = min(self.h, math.ceil(max(rows)) + margin + 1)
        c0 = max(0, math.floor(min(cols)) - margin)
        c1 = min(self.w, math.ceil(max(cols)) + margin + 1)
        return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))

    def side_window(self, side: Side, a0: float, a1: float, v0: float, v1: float) -> tuple[slice, slice]:
        """Pixel slices covering side coordinates ``a in [a0, a1]``, ``v in [v0, v1]``."""
        s, hw, lh = _SIGN[side], self.anat.hw, self.anat.lh
        xs = sorted((s * a0 * hw, s * a1 * hw))
        return self.window(xs[0], xs[1], v0 * lh, v1 * lh)

    def side_coords(self, side: Side, win: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        """``(a, v)`` arrays of the window [h, w] for that side."""
        return (_F(_SIGN[side] / self.anat.hw) * self.dx[win]), (self.dy[win] * _F(1.0 / self.anat.lh))

    @property
    def px(self) -> float:
        """One pixel in image units."""
        return 1.0 / self.h


def _ramp(f: np.ndarray, width: float) -> np.ndarray:
    """Soft inside-indicator of an implicit function: 0 for ``f <= 0``, linear to 1 at ``f = width``."""
    return np.clip(f * _F(1.0 / width), 0.0, 1.0)


def _edge(f: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased mask of ``f > 0`` (``f`` ~ a distance in image units, ``width`` ~ one or two pixels)."""
    return np.clip(f * _F(1.0 / width) + _F(0.5), 0.0, 1.0)


def _ellipse(dx: np.ndarray, dy: np.ndarray, cx: float, cy: float, rx: float, ry: float, width: float) -> np.ndarray:
    """Anti-aliased filled ellipse; its implicit function is ~ the distance to the rim near the rim."""
    q = np.sqrt(((dx - _F(cx)) * _F(1 / rx)) ** 2 + ((dy - _F(cy)) * _F(1 / ry)) ** 2)
    return _edge((_F(1.0) - q) * _F(min(rx, ry)), width)


def _tube(t: np.ndarray) -> np.ndarray:
    """Projected thickness of a cylinder across its width, ``t`` in ``[-1, 1]`` (0 outside)."""
    return np.sqrt(np.clip(1.0 - t * t, 0.0, 1.0))


def _bbox(mask: np.ndarray, win: tuple[slice, slice]) -> tuple[float, float, float, float] | None:
    """``(x, y, w, h)`` of ``mask > 0`` inside the window, in full-image pixels; ``None`` if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    r0, c0 = win[0].start or 0, win[1].start or 0
    return float(c0 + cols[0]), float(r0 + rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)


def _box(label: str, location: str, mask: np.ndarray, win: tuple[slice, slice]) -> Box | None:
    b = _bbox(mask, win)
    return None if b is None else Box(label, b[0], b[1], b[2], b[3], location)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Unit-variance smooth noise [h, w] with features of ~``cell`` pixels (low-resolution field, upsampled)."""
    h, w = shape
    sh, sw = max(2, math.ceil(h / cell) + 3), max(2, math.ceil(w / cell) + 3)
    small = ndimage.gaussian_filter(rng.standard_normal((sh, sw)), 0.8, mode="wrap")
    small = (small - small.mean()) / (small.std() + 1e-9)
    rows = np.arange(h, dtype=_F) / _F(cell) + _F(1.0)
    cols = np.arange(w, dtype=_F) / _F(cell) + _F(1.0)
    r, c = np.broadcast_arrays(rows[:, None], cols[None, :])
    out: np.ndarray = ndimage.map_coordinates(small.astype(_F), [r, c], order=1, mode="nearest")
    return out.astype(_F)


def _polyline(canvas: _Canvas, pts: list[tuple[float, float]], n: int = 24) -> list[tuple[float, float]]:
    """Thorax-frame control points -> a smooth pixel-space polyline (Catmull-Rom through the points)."""
    p = np.array([canvas.to_pixel(x, y) for x, y in pts])  # [K, 2] (col, row)
    if len(p) < 3:
        return [(float(c), float(r)) for c, r in p]
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out: list[tuple[float, float]] = []
    t = np.linspace(0, 1, n, endpoint=False)[:, None]
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        seg = 0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                     + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3)
        out.extend((float(c), float(r)) for c, r in seg)
    out.append((float(p[-1][0]), float(p[-1][1])))
    return out


def _draw_line(canvas: _Canvas, path: list[tuple[float, float]], half_px: float
               ) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Anti-aliased stroke of half-width ``half_px`` along a pixel polyline -> (coverage [h, w], window)."""
    pts = np.asarray(path, dtype=np.float64)
    m = math.ceil(half_px) + 3
    r0, r1 = max(0, int(pts[:, 1].min()) - m), min(canvas.h, int(pts[:, 1].max()) + m + 1)
    c0, c1 = max(0, int(pts[:, 0].min()) - m), min(canvas.w, int(pts[:, 0].max()) + m + 1)
    win = (slice(r0, max(r0, r1)), slice(c0, max(c0, c1)))
    rr = np.arange(win[0].start, win[0].stop, dtype=_F)[:, None]
    cc = np.arange(win[1].start, win[1].stop, dtype=_F)[None, :]
    dist = np.full((rr.shape[0], cc.shape[1]), np.inf, dtype=_F)
    for (ca, ra), (cb, rb) in itertools.pairwise(pts):
        vx, vy = cb - ca, rb - ra
        ll = vx * vx + vy * vy
        if ll < 1e-9:
            continue
        t = np.clip(((cc - _F(ca)) * _F(vx) + (rr - _F(ra)) * _F(vy)) * _F(1 / ll), 0, 1)
        d2 = (cc - _F(ca) - t * _F(vx)) ** 2 + (rr - _F(ra) - t * _F(vy)) ** 2
        np.minimum(dist, d2, out=dist)
    cover = np.clip(_F(half_px + 0.5) - np.sqrt(dist), 0.0, 1.0)
    return cover, win


# ----------------------------------------------------------------------------------------------------------------
# Anatomy
# ----------------------------------------------------------------------------------------------------------------


def _sample_anatomy(acq: CxrAcquisition, rng: np.random.Generator) -> _Anatomy:
    """Patient-to-patient variation; always the same number of draws from ``rng``."""
    size = int(np.clip(acq.size, 64, 4096))
    aspect = float(rng.uniform(0.80, 1.0))
    width = max(32, round(size * aspect))
    s = float(acq.patient_scale) * float(rng.uniform(0.97, 1.03))
    ap = acq.view == "AP"
    hw = min(0.345 * s, 0.42 * width / size)
    apex = float(rng.uniform(0.06, 0.10))
    lh = min(0.69 * s * (0.92 if ap else 1.0) * float(rng.uniform(0.95, 1.05)), 0.82 - apex)
    dome_r = (0.81 if ap else 0.84) + float(rng.normal(0, 0.015))
    dome_l = dome_r + 0.03 + float(rng.normal(0, 0.01))
    seeds = {name: int(x) for name, x in zip(_STREAMS, rng.integers(0, 2**62, size=len(_STREAMS)), strict=True)}
    return _Anatomy(
        height=size, width=width, midline=float(rng.normal(0, 0.01)), apex=apex, hw=hw, lh=lh,
        rot=math.radians(float(acq.rotation_deg)), ap=ap, dome={"right": dome_r, "left": dome_l},
        dome_peak={"right": float(rng.uniform(0.40, 0.52)), "left": float(rng.uniform(0.42, 0.55))},
        ctr=float(rng.uniform(0.39, 0.53)), heart_low=float(rng.uniform(0.87, 0.93)),
        rib_curve=float(rng.uniform(0.19, 0.26)), rib_start=float(rng.uniform(-0.10, -0.05)),
        rib_span=float(rng.uniform(1.05, 1.20)), n_ribs=float(rng.uniform(11.0, 12.5)),
        clavicle_v=float(rng.uniform(0.10, 0.17)) - (0.04 if ap else 0.0),
        breast=float(rng.uniform(0.5, 1.0)) if rng.random() < 0.45 else 0.0,
        bubble=float(rng.uniform(0.5, 1.0)) if rng.random() < 0.7 else 0.0,
        knob=float(rng.uniform(0.10, 0.18)), vessel_gain=float(rng.uniform(0.8, 1.2)), seeds=seeds,
    )


def _medial(side: Side, v: np.ndarray, knob: float) -> np.ndarray:
    """Lung medial border ``a(v)``: the mediastinal contour (SVC on the right; aortic knob and PA on the left)."""
    if side == "right":
        return _F(0.10) + _F(0.08) * np.exp(-(((v - _F(0.30)) * _F(1 / 0.18)) ** 2))
    return (_F(0.11) + _F(knob) * np.exp(-(((v - _F(0.27)) * _F(1 / 0.08)) ** 2))
            + _F(0.06) * np.exp(-(((v - _F(0.41)) * _F(1 / 0.07)) ** 2)))


def _dome(anat: _Anatomy, side: Side, a: np.ndarray, lift: float = 0.0) -> np.ndarray:
    """Hemidiaphragm ``v(a)``: highest at ``dome_peak``, steep down to the costophrenic angle (v = 1, a = 1)."""
    top, peak = anat.dome[side] - lift, anat.dome_peak[side]
    lat = np.clip((a - _F(peak)) * _F(1 / (1.0 - peak)), 0, None)
    med = np.clip(_F(peak) - a, 0, None)
    return _F(top) + _F(1.0 - top) * lat ** _F(2.2) + _F(0.35) * med * med


_APEX = (0.51, 0.37, 0.30)  # apical ellipse: centre a, radius in a, centre v (= radius in v)


def _apex_half(v: np.ndarray) -> np.ndarray:
    """Half-width (in units of its radius) of the apical ellipse at ``v``: 0 at the apex top, 1 from its centre."""
    vc = _APEX[2]
    t = np.clip((v - _F(vc)) * _F(1 / vc), -1, 0)
    out: np.ndarray = np.sqrt(_F(1) - t * t)
    return out


def _lung_f(anat: _Anatomy, side: Side, a: np.ndarray, v: np.ndarray, lift: float = 0.0
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Implicit lung shape in ``(a, v)``: (lateral, medial, basal, min) "distances" in image units (> 0 inside).

    Above ``v = 0.30`` the lung is bounded by the two halves of an apical ellipse (centre ``a = 0.51``, radii
    0.37 x 0.30, top at ``v = 0``); below it the lateral border bows out from ``a = 0.88`` to ``a = 1.0`` at
    ``v = 0.85`` (the lung widens toward the base) and the medial border is the mediastinal contour; the base
    is the hemidiaphragm dome (``lift`` raises it, e.g. for volume loss). Lateral and medial "distances" are
    horizontal ones.
    """
    hw, lh = anat.hw, anat.lh
    ac, ra, vc = _APEX
    half = _apex_half(v)
    widen = np.sin(_F(math.pi / 2) * np.clip((v - _F(vc)) * _F(1 / 0.55), 0, 1))
    lat = np.where(v < _F(vc), _F(ac) + _F(ra) * half, _F(ac + ra) + _F(1.0 - ac - ra) * widen)
    f_outer = (lat - a) * _F(hw)
    f_med = (a - np.maximum(_medial(side, v, anat.knob), _F(ac) - _F(ra) * half)) * _F(hw)
    f_bot = (_dome(anat, side, a, lift) - v) * _F(lh)
    f_top = v * _F(lh)  # nothing above the apex (where both half-ellipse borders meet)
    return f_outer, f_med, f_bot, np.minimum(np.minimum(f_outer, f_med), np.minimum(f_bot, f_top))


@dataclass
class _Lung:
    """One lung's window and fields (all [h, w] over ``win``)."""

    side: Side
    win: tuple[slice, slice]
    a: np.ndarray
    v: np.ndarray
    f: np.ndarray  # min implicit distance (image units), > 0 inside
    mask: np.ndarray  # anti-aliased inside-mask
    depth: np.ndarray  # air depth, 0..~1.1
    vessels: np.ndarray  # vascular markings (attenuation), removed where air is replaced or absent
    dens: np.ndarray  # added attenuation from findings (fluid, consolidation, ...)
    air_keep: np.ndarray  # fraction of air kept (findings replace air)
    vessel_keep: np.ndarray  # fraction of vessel markings kept


def _make_lung(canvas: _Canvas, side: Side) -> _Lung:
    anat = canvas.anat
    win = canvas.side_window(side, 0.0, 1.08, -0.02, 1.05)
    a, v = canvas.side_coords(side, win)
    f_outer, f_med, f_bot, f = _lung_f(anat, side, a, v)
    px = canvas.px
    mask = _edge(f, 1.5 * px)
    # air depth: thin toward the lateral wall (tangential lung edge), sharp at the heart border and the dome
    depth = (_ramp(f_outer, 0.06) ** _F(0.5) * _ramp(f_med + _F(0.5 * px), 0.012) * _ramp(f_bot + _F(0.5 * px), 0.010)
             * (_F(0.78) + _F(0.30) * np.clip(v, 0, 1)))
    vessels = _vessels(canvas, side, win) * (_F(0.8) + _F(0.4) * np.clip(v, 0, 1)) * _ramp(f, 0.01)
    ones = np.ones_like(a)
    return _Lung(side, win, a, v, f, mask, depth, vessels, np.zeros_like(a), ones, ones.copy())


def _hilum(side: Side) -> tuple[float, float]:
    """``(a, v)`` of the hilum (the left one is slightly higher)."""
    return (0.27, 0.50) if side == "right" else (0.29, 0.46)


def _tree(canvas: _Canvas, side: Side, win: tuple[slice, slice], rng: np.random.Generator,
          trunks: list[tuple[float, float]], root: tuple[float, float], width0: float, min_px: float,
          inside: float, spread: float = 0.0) -> np.ndarray:
    """A branching tube tree inside one lung, rasterised into the window [h, w] (peak ~ diameter in image units).

    Grown generation by generation from ``root`` (side coordinates) along ``trunks`` (angle from the lateral
    direction in degrees, + = downward; length in image units), starting up to ``spread`` (side units) from
    the root along their direction: each segment forks into a near-straight daughter
    (0.8 x the width) and a side branch (0.6 x) at 15-40 degrees, until the diameter falls below ``min_px``
    pixels or a tip leaves the lung (``inside`` = how far inside, image units). Segments are splatted as points
    every half pixel into three width classes, each blurred by a Gaussian of that class's width.
    """
    anat = canvas.anat
    s, hw, lh = _SIGN[side], anat.hw, anat.lh
    px = canvas.px
    ang = np.radians([t[0] for t in trunks]) + rng.normal(0, 0.08, len(trunks))
    # trunks leave from around the hilum, upper-lobe ones from its upper part: (lateral, down) in image units
    x = root[0] * hw + spread * hw * (0.3 * np.cos(ang) + rng.normal(0, 0.1, len(trunks)))
    y = root[1] * lh + spread * lh * (0.6 * np.sin(ang) + rng.normal(0, 0.1, len(trunks)))
    length = np.array([t[1] for t in trunks]) * rng.uniform(0.85, 1.15, len(trunks))
    width = np.full(len(trunks), width0)
    segs: list[np.ndarray] = []  # rows: x0, y0, x1, y1, width
    for _ in range(9):
        if x.size == 0:
            break
        ang = ang + rng.normal(0, 0.16, x.size)
        x1, y1 = x + length * np.cos(ang), y + length * np.sin(ang)
        *_, f = _lung_f(anat, side, (x1 / hw).astype(_F), (y1 / lh).astype(_F))
        ok = f > inside
        if not ok.any():
            break
        segs.append(np.stack([x[ok], y[ok], x1[ok], y1[ok], width[ok]], axis=1))
        keep = ok & (width * 0.8 > min_px * px)
        n = int(keep.sum())
        if n == 0:
            break
        turn = rng.uniform(0.26, 0.70, n) * np.where(rng.random(n) < 0.5, -1.0, 1.0)
        x = np.concatenate([x1[keep], x1[keep]])
        y = np.concatenate([y1[keep], y1[keep]])
        ang = np.concatenate([ang[keep] - 0.25 * turn, ang[keep] + turn])
        length = np.concatenate([length[keep] * rng.uniform(0.7, 0.9, n), length[keep] * rng.uniform(0.5, 0.75, n)])
        width = np.concatenate([width[keep] * 0.8, width[keep] * 0.6])
    shape = (win[0].stop - win[0].start, win[1].stop - win[1].start)
    out = np.zeros(shape, dtype=_F)
    if not segs:
        return out
    seg = np.concatenate(segs)
    # sample points along segments, in pixels of the window
    c = math.cos(anat.rot)
    sn = math.sin(anat.rot)

    def pix(xx: np.ndarray, yy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xr, yr = s * xx + anat.midline, yy + anat.apex - 0.5
        col = (c * xr - sn * yr) * canvas.h + canvas.w / 2 - 0.5 - win[1].start
        row = (sn * xr + c * yr + 0.5) * canvas.h - 0.5 - win[0].start
        return col, row

    c0, r0 = pix(seg[:, 0], seg[:, 1])
    c1, r1 = pix(seg[:, 2], seg[:, 3])
    n_pts = np.maximum(2, np.ceil(np.hypot(c1 - c0, r1 - r0) * 2).astype(int))
    idx = np.repeat(np.arange(len(seg)), n_pts)
    t = (np.arange(idx.size) - np.repeat(np.cumsum(n_pts) - n_pts, n_pts)) / np.repeat(n_pts, n_pts)
    cols = np.rint(c0[idx] + t * (c1 - c0)[idx]).astype(int)
    rows = np.rint(r0[idx] + t * (r1 - r0)[idx]).astype(int)
    wid = seg[idx, 4] / px  # diameter in pixels
    good = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    flat = rows[good] * shape[1] + cols[good]
    wid = wid[good]
    for lo, hi in ((0.0, 1.6), (1.6, 3.2), (3.2, 1e9)):
        sel = (wid >= lo) & (wid < hi)
        if not sel.any():
            continue
        sigma = max(0.6, float(np.median(wid[sel])) / 2.0)
        # a Gaussian of width sigma from 0.5-px-spaced points: peak = weight * 2 / (sigma sqrt(2 pi)); want diameter
        weight = wid[sel] * px * sigma * math.sqrt(2 * math.pi) / 2
        layer = np.bincount(flat[sel], weights=weight, minlength=out.size).reshape(shape).astype(_F)
        out += ndimage.gaussian_filter(layer, sigma, truncate=3.0)
    return out


_TRUNKS = [(-105.0, 0.05), (-80.0, 0.06), (-55.0, 0.06), (-30.0, 0.05), (-8.0, 0.05), (15.0, 0.05), (35.0, 0.06),
           (55.0, 0.06), (75.0, 0.06), (100.0, 0.05)]


def _vessels(canvas: _Canvas, side: Side, win: tuple[slice, slice]) -> np.ndarray:
    """Pulmonary vascular markings: branching trees from the hilum, tapering toward the periphery."""
    anat = canvas.anat
    rng = np.random.default_rng(anat.seeds["vessels"] + (0 if side == "right" else 1))
    ha, hv = _hilum(side)
    scale = anat.lh / 0.6
    trunks = [(ang, ln * scale) for ang, ln in _TRUNKS]
    tree = _tree(canvas, side, win, rng, trunks, (ha + 0.02, hv), 0.014 * scale, 0.7, 0.004, spread=0.12)
    return tree * _F(8.0 * anat.vessel_gain)


def _heart(canvas: _Canvas, ctr: float) -> tuple[np.ndarray, tuple[slice, slice], float]:
    """Cardiac silhouette as a union of ellipses (RA on the image left, LV bulging to the image right).

    ``ctr`` is the cardiothoracic ratio: the silhouette spans ``dx`` from ``-0.34 * w`` to ``+0.66 * w`` with
    ``w = 2 * hw * ctr`` (magnified 6 % on AP films). Returns (mask [h, w], window, drawn CTR).
    """
    anat = canvas.anat
    mag = 1.06 if anat.ap else 1.0
    w = 2 * anat.hw * ctr * mag
    hh = 0.85 * 2 * anat.hw * 0.45 * (ctr / 0.45) ** 0.55 * mag
    bot = anat.heart_low * anat.lh
    # (centre-x offset from the border it touches, cy, rx, ry, shear): sheared ellipses x' = dx - k (dy - cy),
    # whose horizontal half-extent is sqrt(rx^2 + k^2 ry^2); the LV leans toward the apex (image lower right)
    shapes = [
        ("L", bot - 0.45 * hh, 0.27 * w, 0.44 * hh, 0.55),  # left ventricle
        ("R", bot - 0.42 * hh, 0.16 * w, 0.40 * hh, -0.20),  # right atrium
        ("C", bot - 0.08 * hh, 0.42 * w, 0.20 * hh, 0.0),  # inferior wall resting on the diaphragm
        ("C", bot - 0.40 * hh, 0.36 * w, 0.42 * hh, 0.25),  # right ventricle / body
        ("C", bot - 0.76 * hh, 0.20 * w, 0.26 * hh, 0.0),  # left atrium / outflow
    ]
    parts: list[tuple[float, float, float, float, float]] = []
    for where, cy, rx, ry, k in shapes:
        ext = math.hypot(rx, k * ry)
        cx = 0.66 * w - ext if where == "L" else (-0.34 * w + ext if where == "R" else 0.14 * w)
        parts.append((cx, cy, rx, ry, k))
    x0 = min(cx - math.hypot(rx, k * ry) for cx, _, rx, ry, k in parts)
    x1 = max(cx + math.hypot(rx, k * ry) for cx, _, rx, ry, k in parts)
    y0 = min(cy - ry for _, cy, _, ry, _ in parts)
    win = canvas.window(x0, x1, y0, bot + 0.3 * hh)
    dx, dy = canvas.dx[win], canvas.dy[win]
    mask = np.zeros(dx.shape, dtype=_F)
    for cx, cy, rx, ry, k in parts:
        np.maximum(mask, _ellipse(dx - _F(k) * (dy - _F(cy)), dy, cx, cy, rx, ry, 1.5 * canvas.px), out=mask)
    return mask, win, (x1 - x0) / (2 * anat.hw)


def _body(canvas: _Canvas) -> np.ndarray:
    """Soft-tissue thickness [H, W] (0..~0.9): an elliptical cross-section widening from the neck to the shoulders,
    thicker toward the abdomen."""
    anat = canvas.anat
    dx, dy = canvas.dx, canvas.dy
    y = dy * _F(1 / anat.lh)
    t = np.clip((y + _F(0.26)) * _F(1 / 0.22), 0, 1)
    shoulder = t * t * (_F(3) - _F(2) * t)  # 0 at the neck, 1 below the shoulders
    bw = (_F(0.085) + shoulder * _F(anat.hw * 1.16 - 0.085)) * (_F(1) + _F(0.06) * np.clip(y, 0, 1.6))
    thick = _F(0.55) + _F(0.2) * shoulder + _F(0.17) * np.clip(y + _F(0.1), 0, 1)  # thicker toward the abdomen
    out: np.ndarray = np.sqrt(np.clip(1 - (dx / bw) ** 2, 0, 1)) * thick
    return out


def _ribs_clavicle(canvas: _Canvas, lung: _Lung) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Posterior ribs (arched bands, spacing widening downward), faint anterior ribs and the clavicle."""
    anat = canvas.anat
    win = canvas.side_window(lung.side, 0.03, 1.55, -0.35, 1.25)
    a, v = canvas.side_coords(lung.side, win)
    lat_edge = _F(1.0) + _F(0.12) * np.clip(v, 0, 1)
    # posterior ribs: arcs v = t - c(v) (1 - ((a - 0.6) / 0.6)^2), rising from the spine to a peak at mid
    # hemithorax, then curving down along the lateral chest wall
    curve = _F(anat.rib_curve) * (_F(1.0) + _F(0.8) * np.clip(_F(0.4) - v, 0, 1))
    q = (a - _F(0.6)) * _F(1 / 0.6)
    w = v + curve * (_F(1) - q * q) - _F(1.5) * np.clip(a - _F(1.0), 0, None) ** 2
    u = np.clip((w - _F(anat.rib_start)) * _F(1 / anat.rib_span), 0, None)
    phase = _F(anat.n_ribs) * u ** _F(1 / 1.12)  # spacing grows toward the base
    p = phase - np.floor(phase)
    duty = _F(0.44)
    inside = p < duty
    band = np.where(inside, _tube(p * _F(2 / duty) - _F(1)), _F(0)) ** _F(0.35)
    keep = (_ramp(a - _F(0.06), 0.05) * _ramp(lat_edge + _F(0.14) - a, 0.12)
            * _ramp(phase, 0.6) * _ramp(_F(1.25) - v, 0.15)
            * np.maximum(_ramp(_dome(anat, lung.side, a) + _F(0.04) - v, 0.10), _ramp(a - _F(0.85), 0.2)))
    post = _F(0.09) * band * keep * (_F(1) - _F(0.3) * np.clip(v - _F(0.7), 0, 1))
    # anterior ribs: descending medially, invisible medially (costal cartilage)
    wa = v - _F(0.32) * (_F(1.0) - a)
    pa = (wa + _F(0.05)) * _F(1 / 0.16)
    pa = pa - np.floor(pa)
    ant = _F(0.045) * np.where(pa < 0.35, _tube(pa * _F(2 / 0.35) - _F(1)), _F(0)) * _ramp(a - _F(0.45), 0.3) * (
        _ramp(lat_edge - a, 0.05) * _ramp(v - _F(0.05), 0.1) * _ramp(_F(0.85) - v, 0.15))
    # clavicle: S-shaped bar from the sternal notch up and out to the shoulder
    vc = _F(anat.clavicle_v) - _F(0.14) * a + _F(0.05) * np.sin(_F(math.pi) * a) + _F(0.04) * np.clip(a - _F(1.1), 0, 1)
    thick = _F(0.040) + _F(0.02) * np.exp(-(((a - _F(0.12)) * _F(1 / 0.08)) ** 2))
    clav = _F(0.20) * _tube((v - vc) / thick) * _ramp(a - _F(0.08), 0.04) * _ramp(_F(1.45) - a, 0.06)
    # humeral head and scapula (medial border over the lung on AP films)
    hx, hy = _F(1.62), _F(-0.08)
    rr = np.sqrt(((a - hx) * _F(anat.hw)) ** 2 + ((v - hy) * _F(anat.lh)) ** 2) * _F(1 / (0.085 * anat.hw / 0.335))
    head = _F(0.14) * _tube(rr) ** _F(0.7) * (_F(1) + _F(0.5) * np.clip(rr * _F(4) - _F(3), 0, 1))
    scap_edge = _F(0.72 if anat.ap else 0.95) + _F(0.25) * v
    scap = _F(0.06) * _ramp(a - scap_edge, 0.02) * _ramp(_F(0.62) - v, 0.08) * _ramp(v + _F(0.1), 0.05)
    return post + ant + clav + head + scap, win


def _spine_trachea(canvas: _Canvas, curve: float = 0.0) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Thoracic spine (vertebral bodies, disc spaces, pedicles) minus the tracheal/bronchial air column.

    ``curve`` bows the spine sideways (scoliosis): its axis is ``dx = curve * exp(-((dy - 0.15 lh) / 0.4 lh)^2)``
    (image units; < 0 toward the image's left, the patient's right: dextroconvex).
    """
    anat = canvas.anat
    sw = 0.040 * anat.hw / 0.335
    win = canvas.window(-0.2 * anat.hw - 0.05 - abs(curve), 0.2 * anat.hw + 0.05 + abs(curve), -anat.apex - 0.1, 1.5)
    dx_air, dy = canvas.dx[win], canvas.dy[win]
    dx = dx_air - _F(curve) * np.exp(-(((dy - _F(0.15 * anat.lh)) * _F(1 / (0.4 * anat.lh))) ** 2))
    period = _F(0.055 * anat.lh / 0.6)
    ph = dy / period - np.floor(dy / period)
    disc = _F(1) - _F(0.35) * np.exp(-(((ph - _F(0.9)) * _F(1 / 0.07)) ** 2))
    body = _tube(dx * _F(1 / sw)) ** _F(0.5) * disc
    ped = sum(_tube(np.sqrt(((dx - _F(s * 0.75 * sw)) * _F(1 / (0.22 * sw))) ** 2
                            + ((ph - _F(0.35)) * period * _F(1 / (0.30 * sw))) ** 2)) for s in (-1, 1))
    spinous = _tube(np.sqrt((dx * _F(1 / (0.12 * sw))) ** 2 + ((ph - _F(0.6)) * period * _F(1 / (0.25 * sw))) ** 2))
    spine = _F(0.05) * body + _F(0.04) * ped + _F(0.025) * spinous
    # trachea: air column down to the carina; main bronchi toward the hila
    carina = 0.40 * anat.lh
    tw = _F(0.021 * anat.hw / 0.335)
    trach = _tube(dx_air / tw) * _ramp(_F(carina) - dy, 0.01)
    bronchi: tuple[tuple[Side, float], ...] = (("right", 0.55), ("left", 1.0))  # the left one is more horizontal
    for side, slope in bronchi:
        s = _F(_SIGN[side])
        t = dy - _F(carina)
        along = np.clip(t, 0, 0.11 * anat.lh)
        off = s * dx_air - along * _F(slope)
        trach = np.maximum(trach, _F(0.8) * _tube(off / (tw * _F(0.8))) * _ramp(t, 0.005)
                           * _ramp(_F(0.11 * anat.lh) - t, 0.02))
    return spine - _F(0.20) * trach, win


def _extras(canvas: _Canvas) -> np.ndarray:
    """Hila, breast shadows and the gastric bubble, added to a full [H, W] attenuation map."""
    anat = canvas.anat
    out = np.zeros((canvas.h, canvas.w), dtype=_F)
    for side in _SIDES:
        ha, hv = _hilum(side)
        win = canvas.side_window(side, ha - 0.25, ha + 0.3, hv - 0.2, hv + 0.2)
        a, v = canvas.side_coords(side, win)
        d2 = ((a - _F(ha + 0.03)) * _F(anat.hw)) ** 2 + ((v - _F(hv)) * _F(anat.lh)) ** 2
        out[win] += _F(0.10) * np.exp(-d2 * _F(1 / (2 * 0.028**2)))
        if anat.breast > 0:
            win = canvas.side_window(side, 0.05, 1.35, 0.45, 1.45)
            a, v = canvas.side_coords(side, win)
            ex, ey = (a - _F(0.62)) * _F(1 / 0.52), (v - _F(0.78)) * _F(1 / 0.42)
            q = np.sqrt(ex * ex + ey * ey)
            lobe = np.sqrt(np.clip(1 - q * q, 0, 1)) * _ramp(v - _F(0.55), 0.3)
            out[win] += _F(0.13 * anat.breast) * lobe
    if anat.bubble > 0:
        win = canvas.side_window("left", 0.2, 0.9, 0.7, 1.3)
        a, v = canvas.side_coords("left", win)
        top = _dome(anat, "left", a) + _F(0.03)
        bub = _ellipse(a * _F(anat.hw), v * _F(anat.lh), 0.50 * anat.hw, float(anat.dome["left"] + 0.09) * anat.lh,
                       0.16 * anat.hw * anat.bubble, 0.07 * anat.lh * anat.bubble, 0.003)
        level = _ramp((_F(anat.dome["left"] + 0.10) - v) * _F(anat.lh), 0.002)  # air-fluid level
        out[win] -= _F(0.14) * bub * level * (v > top)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Findings (each modifies a lung's fields and returns its box)
# ----------------------------------------------------------------------------------------------------------------


def _effusion(canvas: _Canvas, lung: _Lung, severity: Severity, rng: np.random.Generator) -> Box | None:
    """Basal fluid with a meniscus: the fluid line rises laterally; it blunts the costophrenic angle first."""
    h = (0.14, 0.26, 0.42)[_LEVEL[severity]] * float(rng.uniform(0.85, 1.15))
    a, v = lung.a, lung.v
    lat = np.clip((a - _F(0.15)) * _F(1 / 0.85), 0, 1)
    top = _F(1.0 + 0.02) - _F(h) * (_F(0.35) + _F(0.65) * lat ** _F(2.2))  # fluid surface v(a): a meniscus
    fluid = _ramp((v - top) * _F(canvas.anat.lh), 0.012) * lung.mask  # thicker with depth, layering posteriorly
    lung.air_keep *= _F(1) - _F(0.95) * fluid
    lung.vessel_keep *= _F(1) - fluid
    lung.dens += _F(0.12) * fluid
    return _box("Pleural Effusion", f"{lung.side} base", fluid > 0.25, lung.win)


def _pneumothorax(canvas: _Canvas, lung: _Lung, rng: np.random.Generator) -> Box | None:
    """Apicolateral air between the chest wall and the collapsed lung (no vessels) + the visceral pleural line.

    The collapsed lung is the lung shape shrunk toward a point low at the hilum, by ``k`` vertically and by a
    fraction of ``k`` that fades toward the base horizontally (lateral half only), so the gap is widest at the
    apex and tapers down the lateral wall.
    """
    anat = canvas.anat
    k = float(rng.uniform(0.13, 0.28))
    ca, cv = 0.35, anat.dome[lung.side] + 0.05  # the diaphragm stays put
    kv = _F(k) * np.clip(_F(1.0) - lung.v, 0.0, 1) ** _F(1.5)  # horizontal shrink, fading toward the base
    a2 = np.where(lung.a > _F(ca), _F(ca) + (lung.a - _F(ca)) / (_F(1) - kv), lung.a)  # the lateral side only
    v2 = np.where(lung.v < _F(cv), _F(cv) + (lung.v - _F(cv)) * _F(1 / (1 - k)), lung.v)
    f_outer2, _, f_bot2, _ = _lung_f(anat, lung.side, a2, v2)
    # the collapsed lung keeps the mediastinal border; its apex and lateral border retract (x (1 - k): image units)
    f_apex2 = (a2 - (_F(_APEX[0]) - _F(_APEX[1]) * _apex_half(v2))) * _F(anat.hw)
    f2 = np.minimum(np.minimum(f_outer2, f_bot2), np.minimum(f_apex2, v2 * _F(anat.lh))) * _F(1 - k)
    collapsed = _edge(f2, 1.5 * canvas.px)
    gap = lung.mask * (_F(1) - collapsed)
    line = np.exp(-((f2 * _F(anat.height / 1.1)) ** 2)) * lung.mask
    lung.vessel_keep *= _F(1) - gap
    lung.air_keep *= _F(1) + _F(0.12) * gap  # no parenchyma: more lucent
    lung.dens += _F(0.05) * line - _F(0.03) * gap
    wide = ndimage.binary_opening(gap > 0.5, structure=np.ones((1, max(2, round(4 * anat.height / 768)))))
    return _box("Pneumothorax", f"{lung.side} apex", wide, lung.win)


def _lobe_zone(lobe: Lobe, heart_border: float) -> tuple[Side, float, float, float, float]:
    """``(side, a, v, ra, rv)`` of a lobe's radiographic zone: upper third, mid zone by the heart, or base."""
    side: Side = "right" if lobe.startswith("right") else "left"
    if lobe.endswith("upper"):
        return side, 0.56, 0.24, 0.36, 0.20
    if lobe in ("right middle", "lingula"):  # against the heart border (it silhouettes it)
        return side, heart_border + 0.10, 0.66, 0.26, 0.16
    return side, 0.60, 0.72, 0.34, 0.17


def _lobe_name(lobe: Lobe) -> str:
    return lobe if lobe == "lingula" else f"{lobe} lobe"


def _patch(canvas: _Canvas, lung: _Lung, zone: tuple[float, float, float, float], rng: np.random.Generator,
           cell_px: float, spread: float) -> np.ndarray:
    """A patchy blob [h, w] in 0..1: a Gaussian around ``zone`` (radii ``ra``, ``rv``) broken up by two octaves of
    smooth noise (``cell_px`` and a third of it, at 768 px); ``spread`` = how much the noise breaks it up."""
    anat = canvas.anat
    za, zv, ra, rv = zone
    ex, ey = (lung.a - _F(za)) * _F(1 / ra), (lung.v - _F(zv)) * _F(1 / rv)
    blob = np.exp(-(ex * ex + ey * ey) * _F(1.5))
    cell = cell_px * anat.height / 768
    noise = _smooth_noise(rng, lung.a.shape, cell) + _F(0.6) * _smooth_noise(rng, lung.a.shape, cell / 3)
    patchy = blob * _F(1.4) + _F(0.5 * spread) * noise * np.sqrt(blob) - _F(0.40)
    soft = ndimage.gaussian_filter(np.clip(patchy * _F(1 / 0.8), 0, 1), 2.5 * anat.height / 768)
    return soft * lung.mask


def _consolidation(canvas: _Canvas, lung: _Lung, lobe: Lobe, pneumonia: bool, heart_border: float,
                   rng: np.random.Generator) -> Box | None:
    """Dense patchy airspace opacity in the lobe's zone, with lucent branching air bronchograms."""
    anat = canvas.anat
    _, za, zv, ra, rv = _lobe_zone(lobe, heart_border)
    s = float(rng.uniform(0.85, 1.2))
    cons = _patch(canvas, lung, (za, zv, ra * s, rv * s), rng, 36.0, 1.0)
    zone_ang = math.degrees(math.atan2((zv - _hilum(lung.side)[1]) * anat.lh, (za - _hilum(lung.side)[0]) * anat.hw))
    trunks = [(zone_ang + d, 0.05 * anat.lh / 0.6) for d in (-35.0, -12.0, 12.0, 35.0)]
    bron = _tree(canvas, lung.side, lung.win, rng, trunks, _hilum(lung.side), 0.008, 0.9, -0.05)
    bron = np.clip(bron * _F(1 / 0.004), 0, 1)
    air_br = bron * cons * _F(0.6)
    lung.air_keep *= _F(1) - _F(0.80) * cons + _F(0.5) * air_br
    lung.vessel_keep *= _F(1) - _F(0.6) * cons
    lung.dens += _F(0.06) * cons
    return _box("Pneumonia" if pneumonia else "Consolidation", _lobe_name(lobe), cons > 0.12, lung.win)


def _opacity(canvas: _Canvas, lung: _Lung, lobe: Lobe, heart_border: float, rng: np.random.Generator) -> Box | None:
    """An ill-defined hazy opacity (vessels still seen through it)."""
    _, za, zv, ra, rv = _lobe_zone(lobe, heart_border)
    s = float(rng.uniform(0.9, 1.25))
    haze = ndimage.gaussian_filter(_patch(canvas, lung, (za, zv, ra * s, rv * s), rng, 50.0, 0.5),
                                   3.0 * canvas.h / 768)
    lung.air_keep *= _F(1) - _F(0.38) * haze
    lung.dens += _F(0.02) * haze
    return _box("Lung Opacity", _lobe_name(lobe), haze > 0.2 * float(haze.max() or 1), lung.win)


def _edema(canvas: _Canvas, lung: _Lung, severity: Severity, rng: np.random.Generator) -> Box | None:
    """Perihilar bat-wing haze (+ Kerley B lines at the lateral bases when moderate or severe)."""
    anat = canvas.anat
    lvl = _LEVEL[severity]
    ha, hv = _hilum(lung.side)
    ra, rv = (0.38, 0.50, 0.62)[lvl], (0.25, 0.32, 0.40)[lvl]
    ex, ey = (lung.a - _F(ha + 0.05)) * _F(1 / ra), (lung.v - _F(hv + 0.03)) * _F(1 / rv)
    noise = _smooth_noise(rng, lung.a.shape, 30.0 * anat.height / 768)
    haze = np.exp(-(ex * ex + ey * ey) * _F(1.6)) * (_F(1) + _F(0.25) * noise) * lung.mask
    amp = (0.16, 0.30, 0.50)[lvl]  # mild edema is subtle
    lung.air_keep *= _F(1) - _F(amp) * np.clip(haze, 0, 1)
    lung.vessel_keep *= _F(1) - _F(0.4) * np.clip(haze, 0, 1)  # indistinct vessels
    lung.dens += _F(0.03) * haze
    drawn = haze > 0.3
    if lvl >= 1:
        period = _F(0.014 * anat.lh / 0.6)
        yy = lung.v * _F(anat.lh)
        ph = yy / period - np.floor(yy / period)
        lines = np.exp(-(((ph - _F(0.5)) * _F(1 / 0.10)) ** 2))
        near_wall = _ramp(lung.f, 0.003) * _ramp(_F(0.035) - lung.f, 0.01)
        kerley = lines * near_wall * _ramp(lung.v - _F(0.55), 0.1) * lung.mask
        lung.dens += _F(0.05 + 0.03 * lvl) * kerley
        drawn = drawn | (kerley > 0.5)
    return _box("Edema", f"{lung.side} perihilar region", drawn, lung.win)


def _atelectasis(canvas: _Canvas, lung: _Lung, rng: np.random.Generator) -> Box | None:
    """Plate-like (discoid) atelectasis: 1-3 thin, slightly oblique linear densities above the dome."""
    anat = canvas.anat
    bands = np.zeros_like(lung.a)
    for _ in range(int(rng.integers(1, 4))):
        a0 = float(rng.uniform(0.42, 0.68))
        v0 = anat.dome[lung.side] - float(rng.uniform(0.05, 0.14))
        half = float(rng.uniform(0.16, 0.28))
        slope = float(rng.uniform(-0.12, 0.05))
        thick = float(rng.uniform(0.008, 0.014))
        d = (lung.v - _F(v0) - _F(slope) * (lung.a - _F(a0))) * _F(anat.lh)
        along = np.abs(lung.a - _F(a0)) * _F(1 / half)
        bands = np.maximum(bands, _tube(d * _F(1 / thick)) * _ramp(_F(1) - along, 0.25))
    bands = ndimage.gaussian_filter(bands, 1.5 * canvas.h / 768) * lung.mask
    lung.air_keep *= _F(1) - _F(0.55) * bands
    lung.dens += _F(0.02) * bands
    return _box("Atelectasis", f"{lung.side} base", bands > 0.3, lung.win)


def _devices(canvas: _Canvas, devices: tuple[str, ...], ctr: float, rng: np.random.Generator,
             atten: np.ndarray) -> list[Box]:
    """Radio-opaque lines and a pacemaker drawn straight into ``atten``; one box per device."""
    anat = canvas.anat
    hw, lh = anat.hw, anat.lh
    scale = anat.height / 768
    boxes: list[Box] = []

    def stroke(points: list[tuple[float, float]], half_px: float, amp: float) -> tuple[np.ndarray, tuple[slice, slice]]:
        cover, win = _draw_line(canvas, _polyline(canvas, points), half_px * scale)
        atten[win] += _F(amp) * cover
        return cover, win

    def add(label_loc: str, parts: list[tuple[np.ndarray, tuple[slice, slice]]]) -> None:
        bs = [b for m, w in parts if (b := _bbox(m > 0.3, w)) is not None]
        if bs:
            x0, y0 = min(b[0] for b in bs), min(b[1] for b in bs)
            x1, y1 = max(b[0] + b[2] for b in bs), max(b[1] + b[3] for b in bs)
            boxes.append(Box("Support Devices", x0, y0, x1 - x0, y1 - y0, label_loc))

    for dev in devices:
        if dev == "ett":  # endotracheal tube: two walls + radio-opaque stripe, tip ~5 cm above the carina
            tip = (0.40 - float(rng.uniform(0.10, 0.16))) * lh
            top = -anat.apex - 0.02
            off = 0.010 * hw / 0.335
            wob = float(rng.normal(0, 0.003))
            parts = [stroke([(o + wob, top), (o + wob * 0.5, tip * 0.5), (o, tip)], 0.9, 0.35)
                     for o in (-off, off)]
            parts.append(stroke([(off * 0.4 + wob, top), (off * 0.4, tip)], 1.3, 0.45))
            add("trachea", parts)
        elif dev == "central line":  # right internal jugular line, tip at the cavoatrial junction
            right = rng.random() < 0.8
            s = -1.0 if right else 1.0
            tip_v = float(rng.uniform(0.42, 0.55))
            pts = [(s * 0.42 * hw, -anat.apex - 0.02), (s * 0.32 * hw, -0.02 * lh), (s * 0.18 * hw, 0.16 * lh),
                   (-0.12 * hw if right else 0.05 * hw, 0.30 * lh), (-0.10 * hw, tip_v * lh)]
            add("superior vena cava", [stroke(pts, 1.2, 0.55)])
        else:  # pacemaker: generator in the left infraclavicular chest wall, leads to the RA and RV apex
            gx, gy = 0.68 * hw, float(rng.uniform(0.06, 0.14)) * lh
            gw, gh = 0.060, 0.048
            win = canvas.window(gx - gw, gx + gw, gy - gh, gy + gh)
            dx, dy = canvas.dx[win], canvas.dy[win]
            p4 = ((dx - _F(gx)) * _F(1 / gw)) ** 4 + ((dy - _F(gy)) * _F(1 / gh)) ** 4
            gen = _edge((_F(1) - p4 ** _F(0.25)) * _F(gh), 1.2 * canvas.px)
            atten[win] += _F(1.6) * gen
            heart_r = 0.34 * 2 * hw * ctr
            ra = [(gx - 0.2 * hw, gy - 0.01), (0.25 * hw, 0.05 * lh), (-0.02 * hw, 0.30 * lh),
                  (-0.10 * hw, 0.50 * lh), (-0.6 * heart_r, 0.62 * lh), (-0.5 * heart_r, 0.56 * lh)]
            rv = [(gx - 0.2 * hw, gy), (0.22 * hw, 0.07 * lh), (-0.04 * hw, 0.32 * lh), (-0.08 * hw, 0.55 * lh),
                  (0.15 * hw, 0.74 * lh), (0.40 * 2 * hw * ctr, 0.86 * lh)]
            add("left chest wall", [(gen, win), stroke(ra, 1.2, 0.6), stroke(rv, 1.2, 0.6)])
    return boxes


def _with_lung_volumes(anat: _Anatomy, incidental: Sequence[Incidental]) -> _Anatomy:
    """Low lung volumes (poor inspiration: shorter lungs, higher diaphragm, crowded vessels) or hyperinflation
    (COPD: taller lungs, flattened hemidiaphragms, a narrow heart, sparse vessels); else ``anat`` unchanged."""
    if "low lung volumes" in incidental:
        return replace(anat, lh=anat.lh * 0.86, vessel_gain=anat.vessel_gain * 1.15)
    if "hyperinflation" in incidental:
        dome = {side: top + 0.6 * (1.0 - top) for side, top in anat.dome.items()}
        return replace(anat, lh=min(anat.lh * 1.12, 0.88 - anat.apex), dome=dome, ctr=anat.ctr * 0.9,
                       vessel_gain=anat.vessel_gain * 0.8)
    return anat


def _incidental(canvas: _Canvas, incidental: Sequence[Incidental], rng: np.random.Generator,
                atten: np.ndarray) -> None:
    """Sternotomy wires, a calcified aortic knob, a hiatal hernia and cholecystectomy clips, drawn into ``atten``
    (lung volumes and scoliosis change the anatomy instead: :func:`_with_lung_volumes`, :func:`_spine_trachea`)."""
    anat = canvas.anat
    hw, lh = anat.hw, anat.lh
    scale = anat.height / 768

    def stroke(points: list[tuple[float, float]], half_px: float, amp: float) -> None:
        cover, win = _draw_line(canvas, _polyline(canvas, points, n=8), half_px * scale)
        atten[win] += _F(amp) * cover

    if "sternotomy" in incidental:  # 5-7 twisted wire loops along the sternum, over the mediastinum and heart
        n = int(rng.integers(5, 8))
        rx, ry = 0.014 * hw / 0.335, 0.007
        loop = np.linspace(0, 2 * math.pi, 9)
        for y in np.linspace(0.20, 0.62, n) * lh:
            y += float(rng.normal(0, 0.008))
            stroke([(rx * math.cos(u), y + ry * math.sin(u)) for u in loop], 1.0, 0.9)
            stroke([(rx, y), (rx + 0.008, y + 0.002)], 1.0, 0.9)  # the twist
    if "aortic calcification" in incidental:  # a thin bright crescent inside the aortic knob's contour
        vs = np.linspace(0.19, 0.35, 6)
        a = 0.11 + anat.knob * np.exp(-(((vs - 0.27) / 0.08) ** 2)) - 0.015
        stroke([(float(ai) * hw, float(v) * lh) for ai, v in zip(a, vs, strict=True)], 2.0, 0.5)
    if "hiatal hernia" in incidental:  # retrocardiac gas with an air-fluid level, behind the lower heart
        cx, cy = 0.08 * hw, (anat.heart_low - 0.10) * lh
        rx, ry = 0.10 * hw, 0.075 * lh
        win = canvas.window(cx - rx, cx + rx, cy - ry, cy + ry)
        dx, dy = canvas.dx[win], canvas.dy[win]
        sac = _ellipse(dx, dy, cx, cy, rx, ry, 1.5 * canvas.px)
        gas = _ramp(_F(cy + 0.25 * ry) - dy, 0.002)
        atten[win] += _F(-0.30) * sac * gas + _F(0.02) * sac * (_F(1) - gas)
    if "cholecystectomy clips" in incidental:  # 2-4 short metal clips below the right hemidiaphragm
        for _ in range(int(rng.integers(2, 5))):
            x = -float(rng.uniform(0.40, 0.62)) * hw
            y = (anat.dome["right"] + float(rng.uniform(0.12, 0.24))) * lh
            ang = float(rng.uniform(0, math.pi))
            d = 0.007
            stroke([(x - d * math.cos(ang), y - d * math.sin(ang)), (x + d * math.cos(ang), y + d * math.sin(ang))],
                   1.3, 1.2)


# ----------------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------------


def _display(atten: np.ndarray, exposure: float) -> np.ndarray:
    """Film-like characteristic curve: attenuation -> display value in [0, 1] (bright = dense)."""
    k = 2.0 / max(0.3, exposure) ** 0.8
    ref = 1.0 - math.exp(-k * 1.5)
    out: np.ndarray = (_F(1) - np.exp(-_F(k) * np.clip(atten, 0, None))) * _F(1 / ref)
    return out


def render_cxr_detailed(findings: CxrFindings, acquisition: CxrAcquisition, rng: np.random.Generator) -> CxrRender:
    """Render a frontal chest radiograph; see :func:`render_cxr`. Also returns anatomy boxes and the drawn CTR."""
    anat = _with_lung_volumes(_sample_anatomy(acquisition, rng), findings.incidental)
    canvas = _Canvas(anat)
    streams = {name: np.random.default_rng(seed) for name, seed in anat.seeds.items()}
    streams["incidental"] = np.random.default_rng([anat.seeds["devices"], 1])  # no extra draw from ``rng``
    boxes: list[Box] = []

    atten = _body(canvas)  # [H, W]
    lungs = {side: _make_lung(canvas, side) for side in _SIDES}

    ctr = anat.ctr
    if findings.cardiomegaly is not None:
        lo, hi = ((0.52, 0.58), (0.57, 0.64), (0.63, 0.72))[_LEVEL[findings.cardiomegaly]]  # mild overlaps normal
        ctr = float(streams["cardiomegaly"].uniform(lo, hi))
    heart, heart_win, ctr_drawn = _heart(canvas, ctr)
    heart_border = {"right": 0.34 * 2 * ctr, "left": 0.66 * 2 * ctr}  # a of the heart borders

    # --- findings on the lungs
    for side in findings.effusion_sides:
        if (b := _effusion(canvas, lungs[side], findings.effusion_severity, streams["effusion"])) is not None:
            boxes.append(b)
    if findings.pneumothorax_side is not None:
        side = findings.pneumothorax_side
        if (b := _pneumothorax(canvas, lungs[side], streams["pneumothorax"])) is not None:
            boxes.append(b)
    if findings.consolidation_lobe is not None:
        lobe = findings.consolidation_lobe
        side = _lobe_zone(lobe, 0.0)[0]
        b = _consolidation(canvas, lungs[side], lobe, findings.pneumonia, heart_border[side], streams["consolidation"])
        if b is not None:
            boxes.append(b)
    if findings.edema is not None:
        for side in _SIDES:
            if (b := _edema(canvas, lungs[side], findings.edema, streams["edema"])) is not None:
                boxes.append(b)
    for side in findings.atelectasis_sides:
        if (b := _atelectasis(canvas, lungs[side], streams["atelectasis"])) is not None:
            boxes.append(b)
    if findings.opacity_lobe is not None:
        lobe = findings.opacity_lobe
        side = _lobe_zone(lobe, 0.0)[0]
        if (b := _opacity(canvas, lungs[side], lobe, heart_border[side], streams["opacity"])) is not None:
            boxes.append(b)

    # --- composite: lungs (air, vessels, finding densities), heart, bones
    air = np.zeros((canvas.h, canvas.w), dtype=_F)
    for lung in lungs.values():
        air[lung.win] += lung.depth * lung.air_keep
        atten[lung.win] += lung.vessels * lung.vessel_keep * lung.mask + lung.dens
    air[heart_win] *= _F(1) - _F(0.85) * heart
    tex = _smooth_noise(streams["texture"], (canvas.h, canvas.w), 14.0 * canvas.h / 768)  # parenchymal texture
    atten += _F(0.015) * tex * np.clip(air, 0, 1)
    atten -= _F(_AIR) * air
    atten[heart_win] += _F(0.05) * heart
    for lung in lungs.values():
        bones, win = _ribs_clavicle(canvas, lung)
        atten[win] += bones
    scoliosis = {"dextroconvex scoliosis": -0.05, "levoconvex scoliosis": 0.05}
    spine, win = _spine_trachea(canvas, sum(scoliosis.get(i, 0.0) for i in findings.incidental))
    atten[win] += spine
    atten += _extras(canvas)
    _incidental(canvas, findings.incidental, streams["incidental"], atten)

    hb = _bbox(heart > 0.5, heart_win)
    if findings.cardiomegaly is not None and hb is not None:
        boxes.insert(0, Box("Cardiomegaly", *hb, location="cardiac silhouette"))
    boxes += _devices(canvas, findings.support_devices, ctr, streams["devices"], atten)

    # --- detector: quantum noise (more where dense: fewer photons), blur, characteristic curve
    noise_rng = streams["noise"]
    sigma = 0.8 * canvas.h / 768
    grain = noise_rng.standard_normal(atten.shape, dtype=_F)
    atten += _F(acquisition.noise * 2.4 * max(1.0, sigma)) * grain * (_F(0.6) + _F(0.6) * np.clip(atten, 0, 1.5))
    atten = ndimage.gaussian_filter(atten, sigma, truncate=3.0)
    image = np.clip(_display(atten, acquisition.exposure), 0, 1).astype(_F)

    anatomy: dict[str, Box] = {}
    if hb is not None:
        anatomy["heart"] = Box("heart", *hb, location="cardiac silhouette")
    for side, lung in lungs.items():
        if (b := _box(f"{side} lung", f"{side} lung", lung.mask > 0.5, lung.win)) is not None:
            anatomy[f"{side} lung"] = b
    return CxrRender(image, boxes, anatomy, float(ctr_drawn))


def render_cxr(findings: CxrFindings, acquisition: CxrAcquisition, rng: np.random.Generator
               ) -> tuple[np.ndarray, list[Box]]:
    """A frontal chest radiograph phantom and one :class:`Box` per rendered finding.

    Returns ``image`` [H, W] float32 in [0, 1] (display convention, bright = dense, like MONOCHROME2), with
    ``H = acquisition.size`` and ``W`` between 0.8 H and H, and the boxes in its pixel coordinates (``x, y``
    = top-left). Findings: cardiomegaly (box = cardiac silhouette), one pleural-effusion box per side, an apical
    pneumothorax, consolidation/pneumonia or an ill-defined opacity in a lobe, bilateral edema (one box per
    lung), basal atelectasis per side, and one "Support Devices" box per device. Incidental findings
    (``findings.incidental``: sternotomy wires, lung volumes, scoliosis, ...) are drawn without a box. The
    patient's right is on the image's left.
    """
    out = render_cxr_detailed(findings, acquisition, rng)
    return out.image, out.boxes


def to_stored(image: np.ndarray, bits_stored: int, monochrome1: bool) -> np.ndarray:
    """Display image in [0, 1] -> stored pixel values ``0 .. 2**bits_stored - 1`` (uint8 for <= 8 bits, else uint16).

    MONOCHROME1 stores the inverse (0 = white), as many CR/DX DICOMs do; a reader must invert it back.
    """
    if not 1 <= bits_stored <= 16:
        raise ValueError(f"bits_stored must be in 1..16, got {bits_stored}")
    top = (1 << bits_stored) - 1
    values = np.rint(np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * top)
    if monochrome1:
        values = top - values
    dtype: type[np.unsignedinteger] = np.uint8 if bits_stored <= 8 else np.uint16
    return values.astype(dtype)

