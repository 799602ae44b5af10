"""Decision Transformer playground: ``streamlit run app/main.py``.

The entry point sets up the page and hands over to the chosen page; every page
starts by drawing the shared sidebar (environment, checkpoint picker, upload). The Playground is the
default page, so a first visit rolls out the default checkpoint at once.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run app/main.py` puts app/ on sys.path, not the repository root.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

# A local image: a :material/...: icon as favicon is fetched from an outside font host (the app works offline).
st.set_page_config(
    page_title="Decision Transformer playground",
    page_icon=str(Path(__file__).with_name("assets") / "favicon.png"),
    layout="wide",
)

# The pages live in app/views/, not app/pages/: Streamlit runs a pages/ folder beside the entry script on its own
# when a page's address is a fresh server's first request, skipping this script's sys.path set-up
# (tests/app/test_browser_doors.py).
PAGES = [
    st.Page("views/playground.py", title="Playground", icon=":material/sports_score:", default=True),
    st.Page("views/attention.py", title="Attention", icon=":material/visibility:"),
    st.Page("views/calibration.py", title="Calibration", icon=":material/show_chart:"),
    st.Page("views/train.py", title="Train", icon=":material/model_training:"),
    st.Page("views/dataset.py", title="Dataset", icon=":material/dataset:"),
    st.Page("views/side_by_side.py", title="Side by side", icon=":material/compare:"),
]

# Each page draws the shared sidebar itself (app.sidebar.draw): widgets the entry script
# draws around st.navigation are lost on reruns under streamlit.testing's AppTest.
st.navigation(PAGES).run()
