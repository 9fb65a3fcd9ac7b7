"""A physiological 12-lead ECG simulator: a moving cardiac dipole, projected onto the twelve lead vectors.

The model
---------
The body surface ECG is, to a good first approximation, the projection of one time-varying *cardiac dipole*
``d(t)`` (the vectorcardiogram, VCG) onto each lead's *lead vector* (Burger & van Milaan 1946; Frank 1956)::

    lead_j(t) = g_j * (e_j . d(t))          e_j: unit lead direction, g_j: lead gain (electrode distance)

Coordinates are the patient's: ``x`` to the patient's **left**, ``y`` **inferior** (toward the feet), ``z``
**anterior**. The limb leads lie in the frontal (x, y) plane of Einthoven's hexaxial reference system (lead I
at 0 deg, II at +60 deg, aVF at +90 deg, III at +120 deg, aVL at -30 deg, aVR at -150 deg); the precordial
leads V1-V6 lie in the horizontal (x, z) plane, from V1 (right parasternal, anterior and slightly right,
~120 deg from the left) round to V6 (mid-axillary, ~0 deg). Only I and II are projected; III, aVR, aVL and aVF
are *derived* with Einthoven's and Goldberger's equations (:data:`medclr.io.leads.LIMB_COEFFICIENTS`), so
``III = II - I`` etc. hold exactly, with and without noise, because noise is added per *electrode* (RA, LA,
LL, V1-V6 against Wilson's central terminal) as in a real recording.

Each heart beat is a sum of *waves*: Gaussian bumps in time (asymmetric for the T wave) that each carry a
fixed dipole direction and amplitude, in the spirit of the dynamical model of McSharry et al. (2003, *IEEE
Trans Biomed Eng* 50:289), which sums Gaussians per wave (P, Q, R, S, T) in a single lead, and of its
three-dimensional VCG extension (Sameni et al. 2007, *EURASIP J Adv Signal Process* 2007:43407). One beat:

====================  ==========================================================  =====================
wave                  dipole direction (what it does on the leads)                  time after QRS onset
====================  ==========================================================  =====================
P (right atrium)      inferior, anterior: upright P in II, first half of V1's P     -PR + 35 ms
P (left atrium)       left, posterior: second half of P, negative in V1             -PR + 65 ms
QRS septal            rightward, anterior: small q in I/V5/V6, small r in V1        12 ms
QRS apical            left, inferior, anterior: R in II/aVF, R wave in V3-V4        ~32 ms
QRS LV free wall      left, posterior: R in I/V5/V6, S in V1-V2                     ~48 ms
QRS basal             superior, posterior: small terminal s                         ~68 ms
ST segment            a plateau from the J point to the T peak (injury current)     J .. T peak
T wave                like the QRS axis (concordant T); slow rise, faster fall      QT - 2.6 sigma_right
====================  ==========================================================  =====================

The rhythm decides *when* beats happen and whether P waves exist; the pathologies change the waves:

- **SR / SBRAD / STACH**: a P wave before every QRS, RR intervals ``60 / heart_rate`` modulated by
  respiratory sinus arrhythmia (0.2-0.33 Hz) and a slower (~0.1 Hz) Mayer wave: mild heart-rate variability.
- **AFIB**: no P waves; RR intervals drawn independently (irregularly irregular, coefficient of variation
  ~0.15-0.3); fibrillatory f-waves at 4-8 Hz with a wandering frequency and amplitude (0.04-0.1 mV), along an
  atrial direction that shows best in V1 and the inferior leads.
- **MI** (territory: anterior -> V1-V4, inferior -> II/III/aVF, lateral -> I/aVL/V5-V6): the early QRS forces
  toward the infarct are removed (the early ones entirely, later ones by half) and an early wave *away* from
  it is added: a pathological Q wave (deeper than a quarter of the R, ~30-40 ms), QS complexes in V1-V3 or
  III. *Acute*: an ST plateau toward the territory (ST elevation there, reciprocal ST depression in the leads
  facing away) and a tall, hyperacute T. *Old*: the T wave points away from the territory (T inversion
  there), no ST elevation.
- **STTC**: ST depression toward the apex-lateral leads (I, II, V4-V6, with the reciprocal ST elevation in
  aVR) and T inversion in the lateral leads.
- **LBBB**: the septum activates from left to right (no septal q in I/V6, no r in V1) and the left ventricle
  slowly, in two humps (broad notched R in I/aVL/V5-V6, deep broad S in V1-V3), QRS 130-165 ms; ST and T point
  against the QRS (discordant: ST elevation in V1-V3, T inversion in I/aVL/V5-V6).
- **RBBB**: a normal first half of the QRS, then a slow rightward-anterior right-ventricular wave (terminal
  R' in V1-V2 giving rsR', wide slurred S in I and V6), QRS 125-160 ms, with T inversion in V1-V2.
- **AVB1**: PR interval 220-340 ms (normal 120-200 ms).
- **LVH**: a bigger left-ventricular free-wall wave, scaled so that the Sokolow-Lyon index
  ``S(V1) + max(R(V5), R(V6))`` is 3.0-5.0 mV while every other record stays below 3.8 mV (up to 3.2 mV
  typically): as in real ECGs, voltage criteria are neither sensitive nor specific, so the label is not a
  voltage threshold (a 3.0-3.8 mV record may or may not be LVH); high limb voltage (R in I/aVL), a
  left-shifted axis, and a strain pattern (lateral ST depression, asymmetric T inversion) in about half of
  them (not with LBBB).

Intervals follow physiology: QRS 80-100 ms, PR 130-190 ms (shorter at higher rates), QT from a corrected
QTc of 390-440 ms by Fridericia's formula ``QT = QTc * RR^(1/3)`` beat by beat. Each record draws its own
amplitude scale, frontal axis (SD 10 deg, shifted left with LVH/LBBB), horizontal rotation (transition zone),
lead gains (electrode placement, habitus; the largest limb-lead QRS is kept at 1.3-2 mV, 1.8-2.6 mV with LVH),
QRS width, and T/P sizes; the QRS amplitude breathes by up to 5 % beat to beat.

Noise (all scaled by :attr:`EcgFindings.noise`; 0 gives the clean signal, and the same seed gives the same
clean signal at every noise level because the noise is drawn last): baseline wander below 0.5 Hz (respiration,
electrode drift), powerline interference at 50 or 60 Hz in some records, and electromyographic (EMG)
muscle noise, band-limited to 20-150 Hz and bursty, strongest on the limb electrodes.

>>> sig = simulate_ecg(EcgFindings(rhythm="SR", heart_rate=70.0), np.random.default_rng(0))
>>> sig.shape, sig.dtype
((12, 5000), dtype('float32'))

A 10 s, 500 Hz record takes about 2 ms on one CPU core without noise and 5-9 ms with it (mostly the EMG and
baseline-wander noise).

:func:`simulate_ecg_timed` also returns when each beat's QRS, J point and T wave happen; :func:`ecg_findings` turns
that into the ground truth of ECG phrase grounding (which leads and beat segments carry an MI or STTC).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from medclr.io.leads import LIMB_COEFFICIENTS, LIMB_LEADS, STANDARD_LEADS
from medclr.synth.state import EcgFindings

WFDB_LEAD_NAMES: tuple[str, ...] = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
"""Channel names as PTB-XL writes them (upper-case augmented leads), in :data:`STANDARD_LEADS` order."""

ADC_GAIN = 1000.0  # adu per mV: 1 uV resolution, as PTB-XL and MIMIC-IV-ECG store their records

# Lead directions. Frontal plane: angle from lead I, clockwise as seen from the front (y points down).
_LIMB_ANGLES = {"I": 0.0, "II": 60.0}
# Horizontal plane: angle from the patient's left (x) toward anterior (z); gains: chest electrodes are close
# to the heart, V2-V4 closest (largest complexes), V1 and V6 farther.
_PRECORDIAL_ANGLES = (120.0, 95.0, 75.0, 55.0, 30.0, 5.0)
_PRECORDIAL_GAINS = (0.95, 1.3, 1.35, 1.25, 1.05, 0.85)

_LIMB_FROM_I_II = np.array([LIMB_COEFFICIENTS[name] for name in LIMB_LEADS])  # [6, 2]

# Wave groups: how a wave's timing follows the beat.
_ATRIAL, _QRS, _REPOL = 0, 1, 2
_QT_REF = 0.4  # s; repolarisation waves are specified for this QT and stretched per beat

# Territories: the outward normal of the infarcted wall, in (left, inferior, anterior) coordinates.
_TERRITORY = {
    "anterior": (0.2, -0.35, 1.0),
    "inferior": (-0.35, 1.0, -0.15),
    "lateral": (1.0, -0.35, -0.1),
}


@dataclass
class _Waves:
    """The waves of one record's template beat: centre (s), left/right widths (s), group, dipole (mV)."""

    mu: list[float]
    sl: list[float]
    sr: list[float]
    group: list[int]
    vec: list[np.ndarray]

    def add(self, mu: float, sl: float, sr: float, group: int, vec: Sequence[float] | np.ndarray) -> None:
        self.mu.append(mu)
        self.sl.append(sl)
        self.sr.append(sr)
        self.group.append(group)
        self.vec.append(np.asarray(vec, dtype=np.float64))

    def indices(self, group: int) -> list[int]:
        return [k for k, g in enumerate(self.group) if g == group]


def _unit(v: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


def _rot_z(deg: float) -> np.ndarray:
    """Rotation in the frontal plane (about the antero-posterior axis): positive turns left toward inferior."""
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_y(deg: float) -> np.ndarray:
    """Rotation in the horizontal plane (about the vertical axis): positive turns left toward anterior."""
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])


def lead_matrix() -> np.ndarray:
    """``[8, 3]`` lead vectors of the independent leads I, II, V1-V6 (before per-record gains)."""
    rows = [(np.cos(np.radians(a)), np.sin(np.radians(a)), 0.0) for a in _LIMB_ANGLES.values()]
    rows += [
        (g * np.cos(np.radians(a)), 0.0, g * np.sin(np.radians(a)))
        for a, g in zip(_PRECORDIAL_ANGLES, _PRECORDIAL_GAINS, strict=True)
    ]
    return np.array(rows)


def _normal_waves(rng: np.random.Generator, conduction: str | None, lvh: bool) -> tuple[_Waves, np.ndarray]:
    """The template beat's P, QRS and T waves (before MI/STTC changes) and its ST plateau vector."""
    w = _Waves([], [], [], [], [])
    p_amp = rng.uniform(0.7, 1.3)
    w.add(0.035, 0.016, 0.016, _ATRIAL, p_amp * np.array([0.02, 0.10, 0.06]))  # right atrium
    w.add(0.066, 0.017, 0.017, _ATRIAL, p_amp * np.array([0.08, 0.06, -0.045]))  # left atrium
    k = rng.uniform(0.9, 1.1)  # QRS duration scale
    lv = rng.uniform(1.35, 1.7) if lvh else 1.0
    t_vec = rng.uniform(0.7, 1.3) * np.array([0.26, 0.3, 0.22])
    st = np.array([0.0, 0.0, rng.uniform(0.0, 0.04)])  # the normal J-point elevation of V2-V3
    if conduction == "LBBB":
        k = rng.uniform(0.9, 1.15)
        w.add(0.018 * k, 0.010 * k, 0.010 * k, _QRS, [0.25, 0.08, -0.25])  # septum activated left -> right
        w.add(0.052 * k, 0.017 * k, 0.017 * k, _QRS, lv * np.array([1.3, 0.3, -0.5]))  # notched R: two humps
        w.add(0.098 * k, 0.017 * k, 0.018 * k, _QRS, lv * np.array([1.2, -0.05, -1.1]))
        main = _unit([1.25, 0.12, -0.8])
        st = -rng.uniform(0.1, 0.2) * main  # discordant ST and T
        t_vec = -rng.uniform(0.35, 0.55) * main + np.array([0.0, 0.1, 0.0])
    else:
        w.add(0.012 * k, 0.006 * k, 0.006 * k, _QRS, [-0.15, 0.05, 0.2])  # septal
        w.add(0.032 * k, 0.009 * k, 0.009 * k, _QRS, [0.45, 0.85, 0.55])  # apical / anterior
        w.add(0.049 * k, 0.010 * k, 0.010 * k, _QRS, lv * np.array([0.95, 0.35, -0.75]))  # LV free wall
        w.add(0.069 * k, 0.008 * k, 0.009 * k, _QRS, [-0.15, -0.22, -0.45])  # basal
        if conduction == "RBBB":
            rv = rng.uniform(0.8, 1.2) * np.array([-0.5, 0.05, 0.65])
            w.add(0.095 * k, 0.018 * k, 0.02 * k, _QRS, rv)  # late, slow right ventricle: R' in V1
            t_vec = t_vec - 0.45 * rv  # secondary T inversion in V1-V2
    w.add(0.296, 0.07, 0.04, _REPOL, t_vec)  # T wave (for QT = 0.4 s)
    return w, st


def _apply_mi(w: _Waves, st: np.ndarray, rng: np.random.Generator, territory: str, acute: bool) -> np.ndarray:
    """Pathological Q waves, and ST elevation + hyperacute T (acute) or T inversion (old), toward a territory."""
    u = _unit(np.asarray(_TERRITORY[territory]) + rng.normal(0.0, 0.05, 3))
    loss = rng.uniform(0.75, 1.0)
    for k in w.indices(_QRS):  # forces toward the dead wall vanish (the early ones entirely)
        lost = loss * (1.0 if w.mu[k] < 0.04 else 0.5) * max(float(w.vec[k] @ u), 0.0)
        w.vec[k] = w.vec[k] - lost * u
    q = rng.uniform(0.35, 0.6) * (0.6 if acute else 1.0)
    w.add(0.025, 0.013, 0.013, _QRS, -q * u)  # >= 40 ms initial force away from the infarct
    t = w.indices(_REPOL)[0]
    along = float(w.vec[t] @ u)
    if acute:
        w.vec[t] = 0.5 * (w.vec[t] - along * u) + rng.uniform(0.3, 0.6) * u  # hyperacute T
        return st + rng.uniform(0.18, 0.4) * u  # injury current: ST elevation in the territory
    w.vec[t] = w.vec[t] - along * u - rng.uniform(0.3, 0.55) * u  # T inversion
    return st


def _apply_sttc(w: _Waves, st: np.ndarray, rng: np.random.Generator, strain: bool = False) -> np.ndarray:
    """ST depression toward the apex / lateral wall and lateral T inversion (asymmetric for LVH strain)."""
    lateral = _unit([0.9, 0.2, -0.25])
    t = w.indices(_REPOL)[0]
    along = float(w.vec[t] @ lateral)
    w.vec[t] = w.vec[t] - along * lateral - rng.uniform(0.15, 0.35) * lateral
    if strain:  # slow descent, quick return
        w.sl[t], w.sr[t] = 0.075, 0.03
    return st - rng.uniform(0.1, 0.2) * _unit([0.75, 0.55, -0.2])


def _qrs_dipole(w: _Waves, t: np.ndarray) -> np.ndarray:
    """``[3, len(t)]`` dipole of the template's QRS waves alone (for voltage calibration)."""
    out = np.zeros((3, t.size))
    for k in w.indices(_QRS):
        out += np.outer(w.vec[k], _bump(t, w.mu[k], w.sl[k], w.sr[k]))
    return out


def _bump(t: np.ndarray, mu: float | np.ndarray, sl: float | np.ndarray, sr: float | np.ndarray) -> np.ndarray:
    """Asymmetric Gaussian: width ``sl`` before the centre ``mu`` and ``sr`` after it (peak 1)."""
    dt = t - mu
    z = dt / np.where(dt < 0, sl, sr)
    return np.exp(-0.5 * z * z)


def _sokolow(leads: np.ndarray) -> float:
    """Sokolow-Lyon index from ``[8, T]`` independent leads (I, II, V1-V6) of one QRS: S(V1) + R(V5 or V6)."""
    return float(max(0.0, -leads[2].min()) + max(leads[6].max(), leads[7].max(), 0.0))


def _rr_intervals(findings: EcgFindings, rng: np.random.Generator, span: float) -> np.ndarray:
    """RR intervals (s) covering ``span`` seconds: sinus with mild HRV, or irregularly irregular for AFIB."""
    rr0 = 60.0 / max(float(findings.heart_rate), 1.0)
    n = int(np.ceil(span / rr0 * 1.5)) + 4
    if findings.rhythm == "AFIB":
        cv = rng.uniform(0.15, 0.3)
        rr = rng.lognormal(-0.5 * cv * cv, cv, n)
        rr = rr0 * rr / rr.mean()
        return np.maximum(rr, 0.27)
    beats = np.arange(n) * rr0
    rsa, f_resp = rng.uniform(0.01, 0.05 if findings.rhythm == "SBRAD" else 0.035), rng.uniform(0.2, 0.33)
    mayer = rng.uniform(0.0, 0.02)
    mod = rsa * np.sin(2 * np.pi * f_resp * beats + rng.uniform(0, 2 * np.pi))
    mod += mayer * np.sin(2 * np.pi * 0.1 * beats + rng.uniform(0, 2 * np.pi)) + rng.normal(0, 0.004, n)
    return rr0 * (1.0 + mod)


def simulate_ecg(
    findings: EcgFindings, rng: np.random.Generator, *, fs: float = 500.0, duration_s: float = 10.0
) -> np.ndarray:
    """Simulate a 12-lead ECG with the given findings: float32 ``[12, T]`` mV in :data:`STANDARD_LEADS` order.

    ``T = round(fs * duration_s)``. The waveform is evaluated in continuous time, so any ``fs`` works (the
    powerline component is left out when ``fs`` cannot carry it). Deterministic for a generator state; the
    clean signal is drawn before the noise, so ``replace(findings, noise=0)`` with the same seed gives the
    same record without noise. See the module docstring for the model.
    """
    return simulate_ecg_timed(findings, rng, fs=fs, duration_s=duration_s)[0]


@dataclass(frozen=True)
class BeatTiming:
    """When each simulated beat's waves happen, in seconds from the record's start (``[B]`` arrays each).

    Beats whose window overlaps the record are listed, so times may fall before 0 or after the record's end.
    ``j_point`` is the end of the QRS (the ST segment starts there), ``t_end`` the end of the T wave (its peak
    plus 2.5 of its falling widths).
    """

    qrs_onset: np.ndarray
    j_point: np.ndarray
    t_peak: np.ndarray
    t_end: np.ndarray


def simulate_ecg_timed(
    findings: EcgFindings, rng: np.random.Generator, *, fs: float = 500.0, duration_s: float = 10.0
) -> tuple[np.ndarray, BeatTiming]:
    """:func:`simulate_ecg` plus the :class:`BeatTiming` of its beats (same draws, same signal for a seed)."""
    n_samples = round(fs * duration_s)
    t_axis = np.arange(n_samples) / fs

    # --- the record's template beat -------------------------------------------------------------------------
    w, st = _normal_waves(rng, findings.conduction, findings.lvh)
    if findings.mi_territory is not None:
        st = _apply_mi(w, st, rng, findings.mi_territory, findings.mi_acute)
    strain = findings.lvh and findings.conduction != "LBBB" and rng.random() < 0.5
    if findings.sttc or strain:
        st = _apply_sttc(w, st, rng, strain=strain and not findings.sttc)
    if findings.rhythm == "AFIB":
        for k in reversed(w.indices(_ATRIAL)):
            for column in (w.mu, w.sl, w.sr, w.group, w.vec):
                del column[k]

    # --- geometry: axis, rotation, gains; calibrate QRS voltage ---------------------------------------------
    axis_shift = rng.normal(0.0, 10.0) - (15.0 if findings.lvh or findings.conduction == "LBBB" else 0.0)
    rotation = _rot_z(axis_shift) @ _rot_y(rng.normal(0.0, 8.0))
    leads = lead_matrix() @ rotation  # [8, 3]: project the rotated heart = project onto counter-rotated leads
    leads[:2] *= rng.uniform(0.75, 1.2)  # limb leads: habitus
    leads[2:] *= rng.uniform(0.88, 1.12, (6, 1))  # chest electrode placement
    qrs = leads @ _qrs_dipole(w, np.arange(-0.01, 0.25, 0.001))  # [8, 260] template QRS, 1 ms steps
    sokolow = _sokolow(qrs)
    scale = rng.uniform(0.75, 1.25)
    if findings.lvh:
        scale = rng.uniform(3.0, 5.0) / sokolow
    elif sokolow * scale > 3.2:
        scale = rng.uniform(2.6, 3.8 if rng.random() < 0.25 else 3.2) / sokolow
    for k in w.indices(_QRS):
        w.vec[k] = w.vec[k] * scale
    limb_peak = scale * np.abs(_LIMB_FROM_I_II @ qrs[:2]).max()  # largest limb-lead QRS deflection
    limb_cap = rng.uniform(1.8, 2.6) if findings.lvh else rng.uniform(1.3, 2.0)
    if limb_peak > limb_cap:  # the chest leads carry the high voltage; limb leads stay plausible
        leads[:2] *= limb_cap / limb_peak
    qrs_end = max(w.mu[k] + 2.2 * w.sr[k] for k in w.indices(_QRS))

    # --- intervals and beats ----------------------------------------------------------------------------------
    pr0 = rng.uniform(0.22, 0.34) if findings.conduction == "AVB1" else rng.uniform(0.13, 0.19)
    qtc = rng.uniform(0.39, 0.44)
    pre, post = 0.5, 0.8  # window around each QRS onset (s)
    rr = _rr_intervals(findings, rng, duration_s + pre + post)
    onsets = -post - rng.uniform(0.0, rr[0]) + np.concatenate([[0.0], np.cumsum(rr[:-1])])
    keep = onsets < duration_s + pre
    onsets, prev_rr = onsets[keep], np.concatenate([[rr[0]], rr[:-1]])[keep]
    n_beats = onsets.size
    resp = np.sin(2 * np.pi * rng.uniform(0.2, 0.33) * onsets + rng.uniform(0, 2 * np.pi))
    qrs_mod = 1.0 + rng.uniform(0.0, 0.05) * resp  # respiration moves the heart: beat-to-beat amplitude
    qt = qtc * np.cbrt(prev_rr)  # Fridericia
    pr = pr0 * (0.8 / np.clip(prev_rr, 0.35, 1.6)) ** 0.15 + rng.normal(0.0, 0.002, n_beats)

    # --- evaluate all beats' waves on their windows (vectorised) ------------------------------------------------
    n_win = int(np.ceil((pre + post) * fs))
    start = np.floor((onsets - pre) * fs).astype(np.int64)  # [B] first sample of each window
    t_loc = (start[:, None] + np.arange(n_win)[None, :]) / fs - onsets[:, None]  # [B, W] time from onset
    group = np.asarray(w.group)
    mu = np.asarray(w.mu)[None, :].repeat(n_beats, 0)  # [B, K]
    sl = np.asarray(w.sl)[None, :].repeat(n_beats, 0)
    sr = np.asarray(w.sr)[None, :].repeat(n_beats, 0)
    amp = np.ones((n_beats, group.size))
    stretch = (qt / _QT_REF)[:, None]
    mu[:, group == _ATRIAL] -= pr[:, None]
    for arr in (mu, sl, sr):
        arr[:, group == _REPOL] *= stretch
    amp[:, group == _QRS] = qrs_mod[:, None]
    dt = t_loc[:, None, :] - mu[:, :, None]  # [B, K, W]
    z = dt / np.where(dt < 0, sl[:, :, None], sr[:, :, None])
    shapes = np.exp(-0.5 * z * z) * amp[:, :, None]
    dip = np.einsum("bkw,kc->bcw", shapes, np.stack(w.vec))  # [B, 3, W]
    t_peak = w.mu[w.indices(_REPOL)[0]] * stretch[:, 0]
    plateau = _sigmoid((t_loc - (qrs_end - 0.012)) / 0.006) * _sigmoid(-(t_loc - t_peak[:, None]) / (0.03 * stretch))
    dip += st[None, :, None] * plateau[:, None, :]
    buffer = np.zeros((3, n_samples + 2 * n_win))
    for b in range(n_beats):  # overlapping windows: a short loop over beats
        lo = int(start[b]) + n_win
        if -n_win < start[b] < n_samples:
            buffer[:, lo : lo + n_win] += dip[b]
    dipole = buffer[:, n_win : n_win + n_samples]  # [3, T]
    if findings.rhythm == "AFIB":
        dipole = dipole + _fibrillatory_waves(rng, t_axis)

    # --- leads, then noise per electrode --------------------------------------------------------------------
    independent = leads @ dipole  # [8, T]: I, II, V1-V6
    independent += _electrode_noise(rng, t_axis, fs, findings.noise)
    out = np.empty((12, n_samples), dtype=np.float64)
    lead_i, lead_ii = independent[0], independent[1]
    for row, name in enumerate(LIMB_LEADS):
        c_i, c_ii = LIMB_COEFFICIENTS[name]
        out[row] = c_i * lead_i + c_ii * lead_ii
    out[6:] = independent[2:]
    t_wave = w.indices(_REPOL)[0]
    timing = BeatTiming(qrs_onset=onsets, j_point=onsets + qrs_end, t_peak=onsets + t_peak,
                        t_end=onsets + (w.mu[t_wave] + 2.5 * w.sr[t_wave]) * stretch[:, 0])
    return out.astype(np.float32), timing


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _fibrillatory_waves(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """``[3, T]`` atrial fibrillation f-waves: 4-8 Hz with wandering frequency and amplitude (0.03-0.1 mV)."""
    f0 = rng.uniform(4.5, 7.5)
    wander = sum(rng.uniform(0.1, 0.5) * np.sin(2 * np.pi * rng.uniform(0.05, 0.4) * t + rng.uniform(0, 6.3))
                 for _ in range(3))
    phase = 2 * np.pi * np.cumsum(f0 + wander) * (t[1] - t[0] if t.size > 1 else 0.0)
    envelope = 1.0 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 6.3))
    wave = envelope * (np.sin(phase) + 0.3 * np.sin(2 * phase + rng.uniform(0, 6.3)))
    direction = _unit(np.array([-0.15, 0.55, 0.8]) + rng.normal(0.0, 0.1, 3))
    return np.outer(rng.uniform(0.04, 0.1) * direction, wave)


def _electrode_noise(rng: np.random.Generator, t: np.ndarray, fs: float, level: float) -> np.ndarray:
    """``[8, T]`` noise on I, II, V1-V6 from noise at the nine electrodes RA, LA, LL, V1-V6.

    Per electrode: baseline wander (a few sinusoids below 0.5 Hz), powerline interference (in some records,
    50 or 60 Hz, nearly common-mode) and bursty EMG (white noise band-limited to 20-150 Hz). The bipolar limb
    leads see electrode differences; the chest leads see their electrode minus Wilson's central terminal.
    """
    n = t.size
    if level <= 0 or n == 0:
        return np.zeros((8, n))
    e = np.zeros((9, n))
    # baseline wander: respiration (shared) + electrode drift (own)
    f = rng.uniform(0.05, 0.5, (9, 3))
    a = rng.uniform(0.0, 1.0, (9, 3)) * rng.uniform(0.02, 0.12) / (1.0 + 4.0 * f)
    ph = rng.uniform(0.0, 2 * np.pi, (9, 3))
    for j in range(3):
        e += a[:, j : j + 1] * np.sin(2 * np.pi * f[:, j : j + 1] * t[None, :] + ph[:, j : j + 1])
    breath = np.sin(2 * np.pi * rng.uniform(0.15, 0.33) * t + rng.uniform(0, 2 * np.pi))
    e += rng.uniform(0.0, 0.08) * rng.uniform(0.3, 1.0, (9, 1)) * breath[None, :]
    # powerline
    line = 50.0 if rng.random() < 0.5 else 60.0
    if rng.random() < 0.5 and fs > 2.2 * line:
        amp = rng.uniform(0.003, 0.03)
        ca, cb = rng.normal(1.0, 0.2, (9, 1)) * amp, rng.normal(0.0, 0.2, (9, 1)) * amp
        e += ca * np.sin(2 * np.pi * line * t)[None, :] + cb * np.cos(2 * np.pi * line * t)[None, :]
    # EMG: band-limited white noise with a slowly varying (bursty) envelope, mostly on the limbs
    spec = np.fft.rfft(rng.standard_normal((9, n)), axis=1)
    freqs = np.fft.rfftfreq(n, 1.0 / fs)
    spec[:, (freqs < 20.0) | (freqs > min(150.0, 0.45 * fs))] = 0.0
    emg = np.fft.irfft(spec, n, axis=1)
    emg /= emg.std(axis=1, keepdims=True) + 1e-12
    burst = np.exp(1.2 * np.sin(2 * np.pi * rng.uniform(0.05, 0.6, (9, 1)) * t[None, :] + rng.uniform(0, 6.3, (9, 1))))
    site = np.r_[np.full(3, 1.0), np.full(6, 0.4)][:, None]
    e += rng.uniform(0.002, 0.015) * site * rng.uniform(0.5, 1.0, (9, 1)) * burst / 1.3 * emg
    e += 0.002 * rng.standard_normal((9, n))  # amplifier noise
    e *= level
    ra, la, ll = e[0], e[1], e[2]
    wct = (ra + la + ll) / 3.0
    return np.vstack([la - ra, ll - ra, e[3:] - wct[None, :]])


TERRITORY_LEADS: dict[str, tuple[str, ...]] = {
    "anterior": ("V1", "V2", "V3", "V4"),
    "inferior": ("II", "III", "aVF"),
    "lateral": ("I", "aVL", "V5", "V6"),
}
"""The leads facing each infarct territory, as textbooks list them (the leads where an MI's ST/Q changes show)."""

STTC_LEADS: tuple[str, ...] = ("I", "II", "V4", "V5", "V6")
"""The apex-lateral leads where the simulator's STTC pattern puts its ST depression (module docstring)."""


def ecg_findings(findings: EcgFindings, timing: BeatTiming, duration_s: float) -> list[dict[str, object]]:
    """Where a record's localised findings are: ``[{"label", "phrase", "leads", "wave", "segments_s"}]``.

    The ground truth for ECG phrase grounding (``truth.csv`` column ``ecg_findings``). Only findings with a
    lead territory are listed: an MI (its territory's :data:`TERRITORY_LEADS`) and STTC (:data:`STTC_LEADS`).
    ``segments_s`` are ``[t0, t1]`` seconds from the record's start, one per beat, clipped to the record:

    - acute MI and STTC: the ST-T segment, J point to T end (the injury current and the T changes);
    - old MI: the whole ventricular complex, QRS onset to T end (pathological Q waves and T inversion).

    ``phrase`` is in the machine statements' vocabulary (:func:`medclr.synth.ecg_statements.ecg_machine_statements`).
    Rhythm, conduction and LVH findings are global (every lead, every beat) and are not listed.
    """
    out: list[dict[str, object]] = []

    def entry(label: str, phrase: str, leads: tuple[str, ...], wave: str, start: np.ndarray) -> None:
        t0, t1 = np.clip(start, 0.0, duration_s), np.clip(timing.t_end, 0.0, duration_s)
        segments = [[round(float(a), 3), round(float(b), 3)] for a, b in zip(t0, t1, strict=True) if b - a > 1e-3]
        out.append({"label": label, "phrase": phrase, "leads": list(leads), "wave": wave, "segments_s": segments})

    territory = findings.mi_territory
    if territory is not None:
        name = territory.capitalize()
        if findings.mi_acute:
            entry("MI", f"Acute {territory} infarct", TERRITORY_LEADS[territory], "ST-T", timing.j_point)
        else:
            entry("MI", f"{name} infarct - age undetermined", TERRITORY_LEADS[territory], "QRS-T", timing.qrs_onset)
    if findings.sttc:
        entry("STTC", "Nonspecific ST and T wave abnormality", STTC_LEADS, "ST-T", timing.j_point)
    return out


def write_wfdb(
    path_without_ext: Path, signal: np.ndarray, fs: float, *, comments: Sequence[str] = (),
    lead_names: Sequence[str] = WFDB_LEAD_NAMES,
) -> None:
    """Write ``[12, T]`` mV (:data:`STANDARD_LEADS` order) as a WFDB format-16 record, like PTB-XL stores them.

    Creates ``<path>.hea`` and ``<path>.dat``: 16-bit samples at 1000 adu/mV (1 uV steps, so a value is
    stored to within 0.5 uV), baseline 0, units mV. ``lead_names`` sets the file's channel order and spelling
    (default PTB-XL's ``I, II, III, AVR, AVL, AVF, V1..V6``; MIMIC-IV-ECG writes ``aVF`` before ``aVL``);
    channels are matched to the standard leads by name. Values beyond the 16-bit range (+-32.767 mV) are
    clipped; -32768 is WFDB's missing-sample code.
    """
    import wfdb

    path = Path(path_without_ext)
    sig = np.asarray(signal, dtype=np.float64)
    if sig.ndim != 2 or sig.shape[0] != len(STANDARD_LEADS):
        raise ValueError(f"expected a [12, T] signal, got shape {sig.shape}")
    order = [[lead.lower() for lead in STANDARD_LEADS].index(name.lower()) for name in lead_names]
    limit = 32767.0 / ADC_GAIN
    p_signal = np.ascontiguousarray(np.clip(np.nan_to_num(sig[order]), -limit, limit).T)  # [T, 12] file order
    path.parent.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        path.name,
        fs=float(fs),
        units=["mV"] * 12,
        sig_name=list(lead_names),
        p_signal=p_signal,
        fmt=["16"] * 12,
        adc_gain=[ADC_GAIN] * 12,
        baseline=[0] * 12,
        comments=list(comments),
        write_dir=str(path.parent),
    )


def downsample(signal: np.ndarray, fs_from: float = 500.0, fs_to: float = 100.0) -> np.ndarray:
    """Resample ``[..., T]`` from ``fs_from`` to ``fs_to`` Hz with a polyphase anti-aliasing filter (float32).

    PTB-XL's ``records100`` are 100 Hz copies of the 500 Hz ``records500``; the ratio must be rational
    (e.g. 500 -> 100 is 1/5, 500 -> 250 is 1/2, 360 -> 500 is 25/18).
    """
    from scipy.signal import resample_poly

    ratio = Fraction(fs_to / fs_from).limit_denominator(1000)
    out = resample_poly(np.asarray(signal, dtype=np.float64), ratio.numerator, ratio.denominator, axis=-1)
    return out.astype(np.float32)
