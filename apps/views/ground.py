"""Ground: type a phrase; see where it matches on the X-ray (a heatmap in the original pixels, opacity adjustable)
and on the ECG (a heat band per lead, the best-matching leads framed, the best-matching segments marked). Each
modality has its own phrase, suggested from its best-scoring finding on the Diagnose page. The map's readout
(contribution to the cosine or BioViL's token cosine) can be chosen among those the towers support, and the X-ray
map blurred on the model's token grid (BioViL's engine blurs by 1.5 cells)."""

from __future__ import annotations

import numpy as np
import streamlit as st
from medclr_ui import scores, state, viewer
from medclr_ui.ecg_plot import Heat, ecg_paper_png

from medclr.inference import LEADS, Diagnosis, MapReadout, MedclrError, Upload

FALLBACK = {"cxr": "cardiomegaly", "ecg": "ST elevation"}
READOUT_NAMES = {"auto": "auto", "contribution": "contribution (CAM)", "cosine": "cosine (BioViL)"}

eng = state.engine()
st.title("Ground a phrase")
case = state.case_input(eng)
if case.empty:
    st.info("Upload a chest X-ray and/or an ECG (or open a study from the index), then type a finding.")
    st.stop()


def suggested(query: str) -> str:
    """The best-scoring finding of this case on the Diagnose page, as its first positive prompt."""
    stored = st.session_state.get("diagnosis")
    if stored is not None and stored[0] == case.serial:
        diagnosis: dict[str, Diagnosis] = stored[1]
        if query in diagnosis and diagnosis[query].scores:
            best = max(diagnosis[query].scores, key=lambda s: s.score)
            return scores.phrase_for(eng, query, best.label)
    return FALLBACK[query]


def phrase_input(query: str, label: str, placeholder: str) -> str:
    text = st.text_input(label, suggested(query), key=f"phrase_{query}_{case.serial}", placeholder=placeholder,
                         help="a finding as a report would word it")
    return (text or "").strip()


def ground_cxr(cxr: Upload, phrase: str, opacity: float, readout: MapReadout, smooth: float) -> None:
    assert cxr.view is not None
    heat = eng.ground_cxr(cxr.array, phrase, readout, smooth)  # [H0, W0] in the image's own pixels
    display = viewer.current_display(cxr, case.serial)
    grey = viewer.windowed(cxr.view, display.center, display.width)
    blurred = f" · map blurred by {smooth:g} cells" if smooth else ""
    st.image(viewer.to_display(viewer.heat_overlay(grey, heat, opacity), display),
             caption=f"'{phrase}' on the X-ray · {viewer.caption(cxr, display)}{blurred}")
    bar, text = viewer.colour_bar(float(np.nanmin(heat)), float(np.nanmax(heat)), eng.map_label("cxr", readout))
    st.image(bar, caption=text, width=360)


def ground_ecg(ecg: Upload, phrase: str, opacity: float, readout: MapReadout) -> None:
    g = eng.ground_ecg(ecg.array, phrase, ecg.fs, readout)
    best = [LEADS[i] for i in g.lead_scores.argsort()[::-1][:3]] if g.lead_axis else []
    segments = g.segments()
    png = state.memo(("ecg_ground", case.serial, phrase, opacity, readout), lambda: ecg_paper_png(
        ecg.array, ecg.fs or 500.0, start_s=g.offset_s, heat=Heat(g, opacity, best, segments)))
    st.image(png, caption=f"'{phrase}' on the ECG · shading: {eng.map_label('ecg', readout)} over time on each "
             "lead · red frames: best-matching leads · red bars under each row: best-matching segments")
    spans = ", ".join(f"{a:.2f}-{b:.2f} s" for a, b in segments) or "none stands out"
    if g.lead_axis:
        st.markdown(f"**Best-matching leads:** {', '.join(best)} · **segments:** {spans}")
    else:
        st.markdown(f"**Best-matching segments:** {spans} (this ECG encoder has no lead axis: one time profile "
                    "for all leads)")


opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.5, 0.05, key="opacity")
shown = [m for m, x in (("cxr", case.cxr), ("ecg", case.ecg)) if x is not None]
readout: MapReadout = st.radio(
    "Map readout", eng.map_readouts(shown), format_func=READOUT_NAMES.__getitem__, horizontal=True, key="readout",
    help="contribution (CAM): each region's share of the image-phrase cosine, exact for towers that average their "
    "regions; cosine (BioViL): the phrase's cosine with each region alone; auto: contribution where exact")
try:
    if case.cxr is not None:
        st.subheader("Chest X-ray")
        phrase = phrase_input("cxr", "Phrase to find on the X-ray", "e.g. small left pleural effusion")
        smooth = st.slider("X-ray map smoothing (grid cells)", 0.0, 3.0, 0.0, 0.5, key="smooth",
                           help="a Gaussian blur of the map on the model's token grid before it is drawn (sigma in "
                           "cells; 0: none). BioViL's inference engine blurs its maps by 1.5")
        if phrase:
            ground_cxr(case.cxr, phrase, opacity, readout, smooth)
    if case.ecg is not None:
        st.subheader("12-lead ECG")
        phrase = phrase_input("ecg", "Phrase to find on the ECG", "e.g. ST elevation in the anterior leads")
        if phrase:
            ground_ecg(case.ecg, phrase, opacity, readout)
except MedclrError as err:
    st.error(f"Cannot ground this phrase: {err}")
