"""Which run the app serves, the Engine (loaded once per process), and the current case of the session.

The run and index folders come from ``--run`` / ``--index`` after ``streamlit run apps/medclr_app.py --`` or from
the environment variables ``MEDCLR_RUN`` / ``MEDCLR_INDEX`` (``medclr app`` sets both). Uploads are decoded by
:meth:`Engine.read_uploads` and kept in this session's memory only; the upload box is then emptied (a fresh widget)
so that the uploaded file names, which may carry identifiers such as a DICOM UID, leave the page.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st

from medclr.inference import MAX_UPLOAD_BYTES, Engine, MedclrError, Upload

RUN_ENV, INDEX_ENV = "MEDCLR_RUN", "MEDCLR_INDEX"
NOTICE = ("**Research use only — not for diagnosis.** medclr is research software, not a medical device. Scores, "
          "similar cases and heatmaps come from a model trained on research data and are not validated for "
          "clinical decisions.")
UPLOAD_HELP = ("Chest X-ray: DICOM, PNG or JPEG. ECG: WFDB header + signal file (.hea with .dat/.mat, selected "
               f"together or zipped), DICOM waveform or CSV. Files are checked by content; at most "
               f"{MAX_UPLOAD_BYTES // 2**20} MB. Nothing is stored on disk.")


@dataclass
class CaseState:
    """The session's current case: an X-ray and/or ECG (uploaded or an index study) and, for a study, its report."""

    cxr: Upload | None = None
    ecg: Upload | None = None
    origin: str = ""
    report: str = ""
    serial: int = 0  # changes with every new case, so that per-case controls (window, zoom) reset

    @property
    def empty(self) -> bool:
        return self.cxr is None and self.ecg is None


def run_folders() -> tuple[str | None, str | None]:
    """(run dir, index dir): ``--run``/``--index`` script arguments first, then the environment."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--run")
    parser.add_argument("--index")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.run or os.environ.get(RUN_ENV) or None, args.index or os.environ.get(INDEX_ENV) or None


@st.cache_resource(show_spinner="Loading the model (once per server)...")
def _load_engine(run: str, index: str | None) -> Engine:
    engine = Engine.from_run(run, index)
    engine.warm_up()
    return engine


def engine() -> Engine:
    """The Engine of the configured run; stops the page with a clear message when there is none."""
    run, index = run_folders()
    if not run:
        st.error("No run configured. Start the app with `medclr app --run RUN_DIR [--index INDEX_DIR]`.")
        st.stop()
    try:
        return _load_engine(run, index)
    except MedclrError as err:
        st.error(f"Cannot load the run: {err}")
        st.stop()
        raise  # st.stop() raises; this keeps type checkers content


def case() -> CaseState:
    """The session's current case (created empty on first use)."""
    current: CaseState = st.session_state.setdefault("case", CaseState())
    return current


def _set_case(new: CaseState) -> None:
    new.serial = case().serial + 1
    st.session_state["case"] = new


def case_input(eng: Engine) -> CaseState:
    """The upload box, an index study picker, and a one-line summary of the current case (returned)."""
    generation = st.session_state.setdefault("upload_gen", 0)
    files = st.file_uploader("Upload a chest X-ray and/or a 12-lead ECG", accept_multiple_files=True,
                             key=f"upload_{generation}", help=UPLOAD_HELP,
                             max_upload_size=MAX_UPLOAD_BYTES // 2**20)
    if files:
        _take_upload(eng, [(f.name, f.getvalue()) for f in files], generation)
    error = st.session_state.pop("upload_error", None)
    if error:
        st.error(error)
    if eng.index is not None:
        _index_picker(eng)
    current = case()
    if not current.empty:
        left, right = st.columns([5, 1])
        parts = " + ".join(u.label for u in (current.cxr, current.ecg) if u is not None)
        left.success(f"Current case ({current.origin}): {parts}")
        if right.button("Clear case", key="clear_case"):
            _set_case(CaseState())
            st.rerun()
    return case()


def _take_upload(eng: Engine, files: list[tuple[str, bytes]], generation: int) -> None:
    """Decode the uploads into the case (an ECG joins an uploaded X-ray and vice versa), then empty the box."""
    try:
        uploads = eng.read_uploads(files, csv_fs=float(st.session_state.get("csv_fs", 500.0)))
    except MedclrError as err:
        st.session_state["upload_error"] = f"Could not read the upload. {err}"
    else:
        current = case()
        new = CaseState(current.cxr, current.ecg, "upload") if current.origin == "upload" else CaseState(
            origin="upload")
        for upload in uploads:
            setattr(new, upload.kind, upload)
        _set_case(new)
    st.session_state["upload_gen"] = generation + 1
    st.rerun()


def _index_picker(eng: Engine) -> None:
    assert eng.index is not None
    rows = eng.index.rows
    order = rows.sort_values("split", key=lambda s: s.ne("test")).index  # test studies first
    ids = [str(eng.index.ids[i]) for i in order]
    with st.expander("... or open a study from the index"):
        left, right = st.columns([4, 1])
        chosen = left.selectbox("Study", ids, key="pick_study", label_visibility="collapsed")
        if right.button("Open", key="open_study") and chosen:
            try:
                study = eng.load_case(chosen)
            except MedclrError as err:
                st.error(str(err))
                return
            if study.cxr is None and study.ecg is None:
                st.warning("This study's files are not reachable from here (only its embeddings are indexed).")
            _set_case(CaseState(study.cxr, study.ecg, f"index study {chosen}", study.report))
            st.rerun()


def sidebar(eng: Engine) -> None:
    """Run facts and the CSV sampling-rate option."""
    with st.sidebar:
        st.caption(f"Objective: **{eng.loss}** · image {eng.settings.image_size} px · ECG "
                   f"{eng.settings.ecg_fs:g} Hz x {eng.settings.ecg_samples} samples")
        st.caption(f"Index: {len(eng.index)} studies" if eng.index is not None else "No retrieval index loaded")
        st.number_input("CSV ECG sampling rate (Hz, when the file has no time column)", 50.0, 20000.0, 500.0,
                        key="csv_fs")


def memo(key: tuple[Any, ...], compute: Callable[[], Any], size: int = 24) -> Any:
    """``compute()`` once per session and ``key`` (rendered figures, thumbnails), keeping the newest ``size``."""
    store: dict[tuple[Any, ...], Any] = st.session_state.setdefault("_memo", {})
    if key not in store:
        store[key] = compute()
        while len(store) > size:
            store.pop(next(iter(store)))
    return store[key]
