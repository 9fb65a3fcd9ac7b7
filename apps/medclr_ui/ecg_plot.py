"""The 12-lead ECG as printed: 3 x 4 leads of 2.5 s each plus a 10 s lead II rhythm strip, at 25 mm/s and
10 mm/mV on 1 mm / 5 mm grid paper, with a 1 mV calibration pulse at the start of every row.

Columns are (I, II, III), (aVR, aVL, aVF), (V1, V2, V3), (V4, V5, V6), each showing its own 2.5 s of the same 10 s
(the usual cart layout). The figure is drawn in millimetres at true scale, so printing it at 100 % gives standard
paper. Grounding adds a heat band behind each trace (the phrase's similarity over time on that lead), outlines
the best-matching leads and marks the best-matching segments under every row.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medclr.inference import LEADS, EcgGrounding

MM_PER_S, MM_PER_MV = 25.0, 10.0
ROW_MM, CAL_MM, MARGIN_MM = 35.0, 10.0, 6.0
SECONDS = 10.0
LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
RHYTHM_LEAD = "II"
MINOR, MAJOR, TRACE, HIGHLIGHT = "#f6cccc", "#e39a9a", "#111111", "#c40000"


@dataclass(frozen=True)
class Heat:
    """A grounding map to draw: the EcgGrounding, the opacity (0-1) and the leads / segments to emphasise."""

    grounding: EcgGrounding
    opacity: float
    leads: Sequence[str] = ()
    segments_s: Sequence[tuple[float, float]] = ()


def _paper(width: float, height: float, dpi: int) -> tuple[Any, Any]:
    """An Agg figure of ``width x height`` mm of ECG paper (axes in mm, grid drawn): ``(figure, axes)``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / 25.4, height / 25.4), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    _grid(ax, width, height)
    return fig, ax


def _grid(ax: object, width: float, height: float) -> None:
    from matplotlib.collections import LineCollection

    for step, colour, lw in ((1.0, MINOR, 0.3), (5.0, MAJOR, 0.7)):
        xs, ys = np.arange(0.0, width + 1e-6, step), np.arange(0.0, height + 1e-6, step)
        lines = [[(x, 0.0), (x, height)] for x in xs] + [[(0.0, y), (width, y)] for y in ys]
        ax.add_collection(LineCollection(lines, colors=colour, linewidths=lw, zorder=0))  # type: ignore[attr-defined]


def _heat_band(ax: object, heat: Heat, lead: str, t0: float, t1: float, x0: float, base: float, lo: float,
               hi: float) -> None:
    """The lead's similarity over [t0, t1) s of the record as an RGBA strip behind its trace."""
    from matplotlib import colormaps

    g = heat.grounding
    times = np.linspace(t0, t1, 250, endpoint=False)
    index = np.round((times - g.offset_s) * g.fs).astype(int)
    inside = (index >= 0) & (index < g.map.shape[1])
    values = np.where(inside, g.map[LEADS.index(lead), np.clip(index, 0, g.map.shape[1] - 1)], np.nan)
    norm = np.clip((values - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    rgba = colormaps["YlOrRd"](0.15 + 0.45 * np.nan_to_num(norm))  # [250, 4] yellow -> orange: the trace stays legible
    rgba[:, 3] = np.where(inside, heat.opacity * np.nan_to_num(norm) ** 2, 0.0)  # only the high part shows
    ax.imshow(rgba[None], extent=(x0, x0 + (t1 - t0) * MM_PER_S, base - ROW_MM / 2, base + ROW_MM / 2),  # type: ignore[attr-defined]
              aspect="auto", interpolation="bilinear", zorder=1)


def ecg_paper_png(signal: np.ndarray, fs: float, *, start_s: float = 0.0, heat: Heat | None = None,
                  dpi: int = 110, title: str = "") -> bytes:
    """PNG of ``signal [12, T]`` (mV at ``fs`` Hz, leads in :data:`LEADS` order) from ``start_s`` for 10 s."""
    from matplotlib.patches import Rectangle

    width, height = CAL_MM + SECONDS * MM_PER_S + 2.0, 4 * ROW_MM + MARGIN_MM
    fig, ax = _paper(width, height, dpi)
    lo, hi = (float(heat.grounding.map.min()), float(heat.grounding.map.max())) if heat else (0.0, 1.0)
    rows = [list(LAYOUT[r]) for r in range(3)] + [[RHYTHM_LEAD]]
    for r, leads in enumerate(rows):
        base = height - MARGIN_MM / 2 - (r + 0.5) * ROW_MM
        ax.plot([1, 3, 3, 8, 8, CAL_MM], [base, base, base + MM_PER_MV, base + MM_PER_MV, base, base], color=TRACE,
                lw=0.8, zorder=3)  # 1 mV x 200 ms calibration pulse
        span = SECONDS / len(leads)
        for c, lead in enumerate(leads):
            t0 = start_s + c * span
            x0 = CAL_MM + c * span * MM_PER_S
            k0, k1 = round(t0 * fs), round((t0 + span) * fs)
            trace = signal[LEADS.index(lead), max(k0, 0) : max(k1, 0)]
            full = signal[LEADS.index(lead), int(start_s * fs) : int((start_s + SECONDS) * fs)]
            centre = float(np.nanmedian(full)) if full.size and np.isfinite(full).any() else 0.0
            if heat is not None:
                _heat_band(ax, heat, lead, t0, t0 + span, x0, base, lo, hi)
            x = x0 + np.arange(trace.size) / fs * MM_PER_S
            ax.plot(x, base + (np.nan_to_num(trace - centre)) * MM_PER_MV, color=TRACE, lw=0.7, zorder=3)
            strong = heat is not None and lead in heat.leads
            ax.text(x0 + 1.5, base + ROW_MM / 2 - 5, lead, fontsize=9, zorder=4, fontweight="bold" if strong else
                    "normal", color=HIGHLIGHT if strong else TRACE)
            if strong:
                ax.add_patch(Rectangle((x0, base - ROW_MM / 2 + 0.5), span * MM_PER_S, ROW_MM - 1, fill=False,
                                       edgecolor=HIGHLIGHT, lw=1.2, zorder=4))
            if c:
                ax.plot([x0, x0], [base - 4, base + 4], color=TRACE, lw=0.8, zorder=3)  # lead change mark
        for a, b in heat.segments_s if heat is not None else ():
            xa, xb = (CAL_MM + (max(a, start_s) - start_s) * MM_PER_S, CAL_MM + (min(b, start_s + SECONDS) - start_s)
                      * MM_PER_S)
            if xb > xa:
                ax.plot([xa, xb], [base - ROW_MM / 2 + 1.5] * 2, color=HIGHLIGHT, lw=2.5, zorder=4,
                        solid_capstyle="butt")
    ax.text(1.0, 1.2, f"25 mm/s   10 mm/mV   grid 1 mm / 5 mm   {fs:g} Hz   {title}", fontsize=7, color="#444444",
            zorder=4)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def rhythm_strip_png(signal: np.ndarray, fs: float, *, lead: str = RHYTHM_LEAD, seconds: float = 5.0,
                     dpi: int = 80) -> bytes:
    """A small paper strip of one lead (a thumbnail for retrieval results)."""
    width, height = seconds * MM_PER_S, ROW_MM
    fig, ax = _paper(width, height, dpi)
    trace = signal[LEADS.index(lead), : int(seconds * fs)]
    centre = float(np.nanmedian(trace)) if trace.size else 0.0
    ax.plot(np.arange(trace.size) / fs * MM_PER_S, height / 2 + np.nan_to_num(trace - centre) * MM_PER_MV,
            color=TRACE, lw=0.8)
    ax.text(1.5, height - 6, lead, fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
