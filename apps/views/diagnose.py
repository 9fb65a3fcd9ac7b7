"""Diagnose (landing page): the upload box first; the X-ray viewer and the ECG on paper; zero-shot scores as bars
with the prompts editable in the page. An uploaded study is scored without any further click."""

from __future__ import annotations

import streamlit as st
from medclr_ui import scores, state, viewer
from medclr_ui.ecg_plot import ecg_paper_png

from medclr.inference import Diagnosis, MedclrError, Upload

eng = state.engine()
st.title("Diagnose")
case = state.case_input(eng)
if case.empty:
    st.info("Upload a chest X-ray (DICOM, PNG, JPEG) and/or a 12-lead ECG (WFDB .hea + .dat, DICOM waveform, CSV): "
            "its zero-shot scores appear here straight away.")
    st.stop()

try:
    diagnosis: dict[str, Diagnosis] = eng.diagnose(cxr=case.cxr, ecg=case.ecg, prompts=scores.edited_prompts())
except MedclrError as err:
    st.error(f"Cannot score this case: {err}")
    st.stop()
st.session_state["diagnosis"] = (case.serial, diagnosis)


def scores_section(query: str, title: str) -> None:
    st.subheader(f"Zero-shot probabilities: {title}")
    st.caption(f"{scores.TITLES[query]} · prompts: {diagnosis[query].prompts} · objective: {eng.loss}")
    scores.score_table(diagnosis[query])
    scores.prompt_editor(eng, query)


def header_table(upload: Upload) -> None:
    if upload.header:
        with st.expander("DICOM attributes (de-identified: technical attributes only)"):
            st.table({"Attribute": list(upload.header), "Value": list(upload.header.values())})


if case.cxr is not None:
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.subheader("Chest X-ray")
        slot = st.empty()
        display = viewer.controls(case.cxr, case.serial)
        assert case.cxr.view is not None
        grey = viewer.windowed(case.cxr.view, display.center, display.width)
        slot.image(viewer.to_display(grey, display), caption=viewer.caption(case.cxr, display))
        header_table(case.cxr)
    with right:
        if "cxr" in diagnosis:
            scores_section("cxr", "chest X-ray")

if case.ecg is not None:
    ecg = case.ecg
    st.subheader("12-lead ECG")
    png = state.memo(("ecg_paper", case.serial), lambda: ecg_paper_png(ecg.array, ecg.fs or 500.0))
    st.image(png, caption=f"{ecg.label} · first 10 s · 25 mm/s, 10 mm/mV")
    header_table(ecg)
    if "ecg" in diagnosis:
        scores_section("ecg", "ECG")

if "joint" in diagnosis:
    st.subheader("X-ray and ECG together")
    st.caption(f"{scores.TITLES['joint']} · the two embeddings scored jointly with the run's objective ({eng.loss})")
    scores.score_table(diagnosis["joint"])
    scores.prompt_editor(eng, "joint")

if case.report:
    with st.expander("Report of this index study"):
        st.write(case.report)
