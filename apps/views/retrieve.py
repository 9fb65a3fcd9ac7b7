"""Retrieve: the top-k most similar studies of the index for the current X-ray, ECG, a text, or a combination (a
joint query: Symile's multilinear inner product, GRAM's volume, or ConVIRT's mean cosine), as a gallery of
thumbnails with their reports and scores."""

from __future__ import annotations

import numpy as np
import streamlit as st
from medclr_ui import state, viewer
from medclr_ui.ecg_plot import rhythm_strip_png

from medclr.inference import Engine, Hit, MedclrError

NAMES = {"cxr": "X-rays", "ecg": "ECGs", "report": "reports"}
COLUMNS = 4

eng = state.engine()
st.title("Retrieve similar cases")
case = state.case_input(eng)
index = eng.index
if index is None:
    st.warning("No retrieval index is loaded: start the app with `--index INDEX_DIR` (built by `medclr embed` and "
               "`medclr index` from this run).")
    st.stop()

st.subheader("Query")
c1, c2, c3 = st.columns([1, 1, 2])
use_cxr = c1.checkbox("Current X-ray", value=case.cxr is not None, disabled=case.cxr is None,
                      key=f"q_cxr_{case.serial}")
use_ecg = c2.checkbox("Current ECG", value=case.ecg is not None, disabled=case.ecg is None,
                      key=f"q_ecg_{case.serial}")
text = (c3.text_input("Text", key="q_text", placeholder="e.g. moderate cardiomegaly with pleural effusions") or "")
query = {m: v for m, v in (("cxr", case.cxr if use_cxr else None), ("ecg", case.ecg if use_ecg else None),
                           ("report", text.strip() or None)) if v is not None and m in index.modalities}
if not query:
    st.info("Upload an X-ray or ECG on this page or on Diagnose, or type a text, to search the index.")
    st.stop()
targets = [m for m in index.modalities if m not in query or len(query) == 1]
default = next(iter(query)) if len(query) == 1 and "report" not in query else ("report" if "report" in targets
                                                                               else targets[0])
t1, t2 = st.columns([3, 1])
target = t1.radio("Find", targets, index=targets.index(default), format_func=lambda m: NAMES.get(m, m),
                  horizontal=True, key=f"q_target_{'+'.join(query)}")
k = t2.slider("Cases", 1, 20, 8, key="q_k")
kind = "joint query" if len(query) > 1 else ("similar cases" if target in query else "cross-modal")
st.caption(f"{' + '.join(NAMES.get(m, m) for m in query)} -> {NAMES.get(target, target)} ({kind}; scored with the "
           f"run's objective, {eng.loss}) over {len(index)} indexed studies")

try:
    hits = eng.retrieve(query, target, k)
except MedclrError as err:
    st.error(f"Cannot search: {err}")
    st.stop()


def thumbnail(engine: Engine, hit: Hit) -> tuple[str, object] | None:
    """("cxr", uint8 image) or ("ecg", PNG bytes) of a retrieved study, when its files are reachable."""
    try:
        study = engine.load_case(hit.study_id)
    except MedclrError:
        return None
    if study.cxr is not None and study.cxr.view is not None:
        view = study.cxr.view
        grey = viewer.windowed(view, view.center, view.width)
        small = viewer.to_display(grey, viewer.Display(view.center, view.width))
        step = max(1, small.shape[0] // 240)
        return "cxr", np.ascontiguousarray(small[::step, ::step])
    if study.ecg is not None:
        return "ecg", rhythm_strip_png(study.ecg.array, study.ecg.fs or 500.0)
    return None


st.subheader(f"Top {len(hits)} {NAMES.get(target, target)}")
for start in range(0, len(hits), COLUMNS):
    for column, hit in zip(st.columns(COLUMNS), hits[start : start + COLUMNS], strict=False):
        with column.container(border=True):
            thumb = state.memo(("thumb", hit.study_id), lambda hit=hit: thumbnail(eng, hit), size=64)
            if thumb is not None:
                st.image(thumb[1])
            st.markdown(f"**#{hit.rank}** · score **{hit.score:.3f}** · study `{hit.study_id}` ({hit.split})")
            if hit.labels:
                st.caption("Labels: " + ", ".join(hit.labels))
            report = hit.report or "(no report)"
            st.caption(report if len(report) <= 220 else report[:220] + "...")
            if len(report) > 220:
                with st.expander("Full report"):
                    st.write(report)
