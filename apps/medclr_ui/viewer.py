"""The X-ray viewer: window/level on the modality values (the DICOM's VOI window by default), zoom and pan, and
a heatmap overlay for grounding.

Windowing follows DICOM PS3.3 C.11.2.1.2 in its exact form: ``y = clip((x - (c - w/2)) / w, 0, 1)``, inverted for
MONOCHROME1 (a viewer does not need the half-pixel offsets of the LINEAR function).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
from PIL import Image

from medclr.inference import CxrView, Upload

DISPLAY_PX = 720  # longest side of the displayed image


@dataclass(frozen=True)
class Display:
    """The viewer's current settings: window centre/width (modality units), zoom >= 1 and pan centre (0-1)."""

    center: float
    width: float
    zoom: float = 1.0
    pan_x: float = 0.5
    pan_y: float = 0.5


def windowed(view: CxrView, center: float, width: float) -> np.ndarray:
    """``[H, W]`` uint8 grey image of the modality values through the window (module docstring)."""
    y = np.clip((view.values - (center - width / 2.0)) / max(width, 1e-6), 0.0, 1.0)
    return np.rint((1.0 - y if view.inverted else y) * 255.0).astype(np.uint8)


def crop_box(shape: tuple[int, ...], display: Display) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the zoomed region, kept inside the image."""
    h, w = shape[:2]
    ch, cw = max(1, round(h / display.zoom)), max(1, round(w / display.zoom))
    top = int(np.clip(round(display.pan_y * h - ch / 2), 0, h - ch))
    left = int(np.clip(round(display.pan_x * w - cw / 2), 0, w - cw))
    return top, left, ch, cw


def to_display(image: np.ndarray, display: Display) -> np.ndarray:
    """Crop ``image`` (grey ``[H, W]`` or RGB ``[H, W, 3]`` uint8) to the zoom region and fit it in DISPLAY_PX."""
    top, left, ch, cw = crop_box(image.shape, display)
    pil = Image.fromarray(np.ascontiguousarray(image[top : top + ch, left : left + cw]))
    scale = DISPLAY_PX / max(ch, cw)
    return np.asarray(pil.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.Resampling.LANCZOS))


def heat_overlay(grey: np.ndarray, heat: np.ndarray, opacity: float) -> np.ndarray:
    """``[H, W, 3]`` uint8: the grey image with the min-max normalised ``heat`` (jet) blended at up to ``opacity``
    (less where the similarity is low, so the anatomy stays visible); NaN pixels (never seen by the network) stay
    grey."""
    from matplotlib import colormaps

    finite = np.isfinite(heat)
    lo, hi = (float(heat[finite].min()), float(heat[finite].max())) if finite.any() else (0.0, 1.0)
    norm = np.where(finite, (heat - lo) / max(hi - lo, 1e-12), 0.0)
    colour = colormaps["jet"](norm)[..., :3] * 255.0  # [H, W, 3]
    alpha = np.where(finite, opacity * (0.35 + 0.65 * norm), 0.0)[..., None]  # low similarity: more anatomy
    rgb = grey[..., None].astype(np.float64) * (1.0 - alpha) + colour * alpha
    return np.clip(rgb, 0, 255).astype(np.uint8)


def colour_bar(lo: float, hi: float, label: str = "cosine similarity") -> tuple[np.ndarray, str]:
    """A horizontal jet gradient (``[16, 256, 3]`` uint8) and its caption (``label``: what the map's values are)."""
    from matplotlib import colormaps

    bar = (colormaps["jet"](np.linspace(0, 1, 256))[None, :, :3] * 255).astype(np.uint8).repeat(16, axis=0)
    return bar, f"{label}: blue {lo:+.3f} (low) ... red {hi:+.3f} (high)"


def controls(upload: Upload, serial: int, *, key: str = "viewer") -> Display:
    """Window/level and zoom widgets for ``upload``, starting from :func:`current_display`; the choice is kept in
    the session (widget state does not survive a page change) and returned."""
    view = upload.view
    assert view is not None
    start = current_display(upload, serial)
    lo, hi = float(view.values.min()), float(view.values.max())
    lo, hi = min(lo, view.center - view.width / 2), max(hi, view.center + view.width / 2)
    span = max(hi - lo, 1e-6)
    step = 1.0 if span >= 64 else span / 256
    ident = f"{key}_{serial}"
    with st.expander(f"Window / level and zoom (default window: {view.voi})", expanded=True):
        c1, c2 = st.columns(2)
        center = c1.slider("Level (window centre)", lo, hi, float(np.clip(start.center, lo, hi)), step,
                           key=f"{ident}_c")
        width = c2.slider("Window width", step, 2 * span, float(np.clip(start.width, step, 2 * span)), step,
                          key=f"{ident}_w")
        c3, c4, c5 = st.columns(3)
        zoom = c3.slider("Zoom", 1.0, 4.0, start.zoom, 0.25, key=f"{ident}_z")
        pan_x = c4.slider("Pan left-right", 0.0, 1.0, start.pan_x, 0.05, key=f"{ident}_px", disabled=zoom == 1.0)
        pan_y = c5.slider("Pan up-down", 0.0, 1.0, start.pan_y, 0.05, key=f"{ident}_py", disabled=zoom == 1.0)
        if st.button("Reset to the default window", key=f"{ident}_reset"):
            st.session_state.pop("display", None)
            for suffix in ("c", "w", "z", "px", "py"):
                st.session_state.pop(f"{ident}_{suffix}", None)
            st.rerun()
    display = Display(float(center), float(width), float(zoom), float(pan_x), float(pan_y))
    st.session_state["display"] = (serial, display)
    return display


def current_display(upload: Upload, serial: int) -> Display:
    """The Display last chosen for this case on any page (the default window before that)."""
    view = upload.view
    assert view is not None
    stored = st.session_state.get("display")
    if stored is not None and stored[0] == serial:
        return stored[1]
    return Display(view.center, view.width)


def caption(upload: Upload, display: Display) -> str:
    """What the viewer shows: format, size, spacing, view, window."""
    facts = " · ".join(f"{k} {v}" for k, v in upload.info.items() if k != "Format")
    zoom = f" · zoom {display.zoom:g}x" if display.zoom > 1 else ""
    return f"{upload.format} · {facts} · W {display.width:.4g} / L {display.center:.4g}{zoom}"
