"""medclr for clinicians: zero-shot diagnosis, similar-case retrieval and phrase grounding on uploaded chest X-rays
and 12-lead ECGs. Research use only; not for diagnosis.

    medclr app --run RUN_DIR [--index INDEX_DIR] [--server.port 8501]      # starts this script
    streamlit run apps/medclr_app.py -- --run RUN_DIR --index INDEX_DIR     # the same, by hand

Pages (``apps/views/``): **Diagnose** (the landing page: upload box, viewer, zero-shot scores), **Retrieve** (top-k
similar cases for an X-ray, ECG, text or joint query), **Ground** (a phrase's heatmap on the X-ray and the ECG).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `streamlit run` adds it; AppTest and other runners may not
    sys.path.insert(0, str(HERE))

import streamlit as st  # noqa: E402
from medclr_ui import state  # noqa: E402

st.set_page_config(page_title="medclr (research use only)", layout="wide",
                   menu_items={"Get help": None, "Report a bug": None,
                               "About": "medclr research software. Not a medical device; not for diagnosis."})
st.warning(state.NOTICE)
engine = state.engine()
state.sidebar(engine)
pages = [
    st.Page(HERE / "views" / "diagnose.py", title="Diagnose", icon=":material/stethoscope:", default=True),
    st.Page(HERE / "views" / "retrieve.py", title="Retrieve", icon=":material/search:"),
    st.Page(HERE / "views" / "ground.py", title="Ground", icon=":material/my_location:"),
]
st.navigation(pages, position="top").run()
