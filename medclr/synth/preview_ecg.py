"""A contact sheet of simulated 12-lead ECGs, one per class, printed the way a cardiologist reads them.

Clinical paper conventions: a pink grid of 1 mm small and 5 mm large squares, 25 mm/s (a large square is
0.2 s) and 10 mm/mV (two large squares are 1 mV), a 1 mV calibration pulse at the start of each row, the
standard 3 x 4 layout (I/II/III, aVR/aVL/aVF, V1-V3, V4-V6, 2.5 s each, consecutive in time) and a 10 s lead II
rhythm strip underneath.

>>> ecg_class_plots_png("/tmp/ecg_preview.png", seed=0)      # doctest: +SKIP
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from medclr.io.leads import STANDARD_LEADS
from medclr.synth.ecg import simulate_ecg
from medclr.synth.state import EcgFindings

PREVIEW_CLASSES: dict[str, EcgFindings] = {
    "NORM (sinus rhythm)": EcgFindings(rhythm="SR", heart_rate=72.0),
    "MI anterior, acute (STEMI)": EcgFindings(heart_rate=84.0, mi_territory="anterior", mi_acute=True),
    "MI inferior, acute (STEMI)": EcgFindings(heart_rate=66.0, mi_territory="inferior", mi_acute=True),
    "MI lateral, old (Q + T inversion)": EcgFindings(heart_rate=70.0, mi_territory="lateral"),
    "STTC (ST depression, T inversion)": EcgFindings(heart_rate=78.0, sttc=True),
    "CD: LBBB": EcgFindings(heart_rate=74.0, conduction="LBBB"),
    "CD: RBBB": EcgFindings(heart_rate=68.0, conduction="RBBB"),
    "CD: first-degree AV block": EcgFindings(heart_rate=62.0, conduction="AVB1"),
    "HYP: LVH": EcgFindings(heart_rate=70.0, lvh=True),
    "AFIB": EcgFindings(rhythm="AFIB", heart_rate=95.0),
    "SBRAD": EcgFindings(rhythm="SBRAD", heart_rate=48.0),
    "STACH": EcgFindings(rhythm="STACH", heart_rate=122.0),
}
"""The preview's records: a title and the findings each panel is simulated from."""

_LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
_MM_PER_S, _MM_PER_MV = 25.0, 10.0
_X0 = 9.0  # mm: traces start after the calibration pulse
_ROW_MM = 25.0
_PANEL_W, _PANEL_H = _X0 + 10.0 * _MM_PER_S + 2.0, 4 * _ROW_MM + 4.0


def ecg_class_plots_png(
    out_path: str | PathLike[str],
    seed: int = 0,
    *,
    classes: dict[str, EcgFindings] | None = None,
    noise: float | None = None,
    fs: float = 500.0,
    columns: int = 2,
    dpi: int = 110,
) -> Path:
    """Render one simulated 12-lead record per class on ECG paper and save a PNG; returns its path.

    ``classes`` defaults to :data:`PREVIEW_CLASSES`; ``noise`` overrides each record's noise level (None keeps
    ``EcgFindings.noise``, 1.0). Each record draws from ``default_rng([seed, i])``, so panels are stable.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = list((classes or PREVIEW_CLASSES).items())
    rows = -(-len(items) // columns)
    mm = 1 / 25.4
    fig = plt.figure(figsize=(columns * (_PANEL_W + 4) * mm, rows * (_PANEL_H + 9) * mm), dpi=dpi)
    for i, (title, findings) in enumerate(items):
        if noise is not None:
            findings = EcgFindings(**{**findings.__dict__, "noise": noise})
        signal = simulate_ecg(findings, np.random.default_rng([seed, i]), fs=fs)
        r, c = divmod(i, columns)
        ax = fig.add_axes((c / columns + 0.003, 1 - (r + 1) / rows + 0.004, 1 / columns - 0.006, 1 / rows - 0.02))
        _panel(ax, signal, fs, f"{title}   ({findings.heart_rate:.0f} bpm)")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, facecolor="white")
    plt.close(fig)
    return out


def _panel(ax: Any, signal: np.ndarray, fs: float, title: str) -> None:
    """One record on ECG paper in mm coordinates: grid, calibration pulses, 3 x 4 leads, lead II strip."""
    ax.set_xlim(0, _PANEL_W)
    ax.set_ylim(0, _PANEL_H)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=9, loc="left", pad=2)
    ax.vlines(np.arange(0, _PANEL_W + 0.01, 1.0), 0, _PANEL_H, colors="#fbd5d5", linewidth=0.3, zorder=0)
    ax.hlines(np.arange(0, _PANEL_H + 0.01, 1.0), 0, _PANEL_W, colors="#fbd5d5", linewidth=0.3, zorder=0)
    ax.vlines(np.arange(0, _PANEL_W + 0.01, 5.0), 0, _PANEL_H, colors="#f19a9a", linewidth=0.6, zorder=0)
    ax.hlines(np.arange(0, _PANEL_H + 0.01, 5.0), 0, _PANEL_W, colors="#f19a9a", linewidth=0.6, zorder=0)
    n = signal.shape[1]
    seg = round(2.5 * fs)
    x_all = _X0 + np.arange(n) / fs * _MM_PER_S
    baselines = [_PANEL_H - 16.0 - _ROW_MM * r for r in range(4)]
    for y0 in baselines:  # 1 mV, 200 ms calibration pulse
        ax.plot([1, 2, 2, 7, 7, 8], [y0, y0, y0 + 10, y0 + 10, y0, y0], color="black", linewidth=0.8)
    for r, row in enumerate(_LAYOUT):
        for c, lead in enumerate(row):
            sl = slice(c * seg, min((c + 1) * seg, n))
            y = baselines[r] + signal[STANDARD_LEADS.index(lead), sl] * _MM_PER_MV
            ax.plot(x_all[sl], y, color="black", linewidth=0.6)
            x_lab = _X0 + c * 2.5 * _MM_PER_S + 1.0
            ax.text(x_lab, baselines[r] + 6.0, lead, fontsize=7, fontweight="bold")
            if c:
                ax.plot([x_all[c * seg]] * 2, [baselines[r] - 2.5, baselines[r] + 2.5], color="black", lw=0.8)
    ax.plot(x_all, baselines[3] + signal[STANDARD_LEADS.index("II")] * _MM_PER_MV, color="black", linewidth=0.6)
    ax.text(_X0 + 1.0, baselines[3] + 6.0, "II", fontsize=7, fontweight="bold")
    ax.text(_PANEL_W - 1, 1.0, "25 mm/s  10 mm/mV", fontsize=6, ha="right")
