"""Each page of the Streamlit app, driven by ``streamlit.testing.v1.AppTest`` on the tiny run and its index."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from medclr.io.phi import PHI_KEYWORDS
from tests.apps.conftest import APP

AppTest = pytest.importorskip("streamlit.testing.v1", reason="needs the app extra (pip install -e '.[app]')").AppTest

TIMEOUT = 120


@pytest.fixture
def app(trained_run: Path, app_index: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("MEDCLR_RUN", str(trained_run))
    monkeypatch.setenv("MEDCLR_INDEX", str(app_index))
    return AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()


def _protos(node: Any) -> Iterator[str]:
    """The text of every element on the page (their protobuf messages)."""
    for child in getattr(node, "children", {}).values():
        yield from _protos(child)
    proto = getattr(node, "proto", None)
    if proto is not None:
        yield str(proto)


def page_text(at: AppTest) -> str:
    return "\n".join(_protos(at._tree))


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _upload_dicom(at: AppTest, dicom: Path) -> AppTest:
    at.file_uploader[0].upload(dicom.name, dicom.read_bytes(), "application/dicom")
    return at.run()


def test_landing_page_is_diagnose_with_notice_and_upload_box(app: AppTest) -> None:
    _ok(app)
    assert "Research use only" in app.warning[0].value and "not for diagnosis" in app.warning[0].value
    assert app.title[0].value == "Diagnose" and len(app.file_uploader) == 1
    assert "Upload a chest X-ray" in app.file_uploader[0].label


def test_uploaded_xray_shows_scores_without_clicks(app: AppTest, real_dicom: Path) -> None:
    _upload_dicom(app, real_dicom)
    _ok(app)
    table = app.dataframe[0].value
    assert set(table["Finding"]) == {"Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"}
    assert table["Probability"].between(0, 100).all() and table["Probability"].is_monotonic_decreasing
    assert "X-ray (DICOM, 1024 x 1024 px)" in app.success[0].value
    text = page_text(app)
    ds = pydicom.dcmread(real_dicom)
    secrets = {str(e.value) for e in (*ds, *ds.file_meta) if e.keyword in PHI_KEYWORDS and len(str(e.value)) >= 4}
    assert real_dicom.stem in secrets and not [s for s in secrets if s in text]  # file name = SOP Instance UID
    assert len(app.file_uploader) == 1 and not app.file_uploader[0].value  # emptied: no file name on the page


def test_ecg_upload_adds_ecg_and_joint_scores(app: AppTest, real_dicom: Path, ptbxl_record: tuple[Path, Path]) -> None:
    _upload_dicom(app, real_dicom)
    app.file_uploader[0].set_value([(p.name, p.read_bytes(), "application/octet-stream") for p in ptbxl_record])
    app.run()
    _ok(app)
    assert "ECG (WFDB, 500 Hz, 10.0 s)" in app.success[0].value
    assert [s.value for s in app.subheader if s.value.startswith("Zero-shot probabilities")] == [
        "Zero-shot probabilities: chest X-ray", "Zero-shot probabilities: ECG"]
    assert "12-lead ECG" in [s.value for s in app.subheader]
    assert len(app.dataframe) == 4  # cxr, ecg, joint probabilities, joint similarities (no negative prompt)
    assert set(app.dataframe[2].value["Finding"]) == {"Discordant Cardiac Findings"}
    assert set(app.dataframe[3].value["Finding"]) == {"Heart Failure"}


def test_bad_upload_is_a_friendly_error(app: AppTest) -> None:
    app.file_uploader[0].upload("scan.dcm", b"\x00\x01 definitely not an image" * 20).run()
    assert not app.exception
    assert "Could not read the upload" in app.error[0].value and "scan.dcm" in app.error[0].value


def test_prompts_are_editable_in_the_page(app: AppTest, real_dicom: Path) -> None:
    _upload_dicom(app, real_dicom)
    area = next(t for t in app.text_area if "Cardiomegaly" in t.value)
    area.set_value("query: cxr\nlabels:\n  Edema:\n    positive: [pulmonary edema]\n    negative: [no edema]\n")
    app.button(key="prompt_apply_cxr").click().run()
    _ok(app)
    assert list(app.dataframe[0].value["Finding"]) == ["Edema"]
    app.button(key="prompt_reset_cxr").click().run()
    assert len(app.dataframe[0].value) == 5


def test_window_level_controls_change_the_image(app: AppTest, real_dicom: Path) -> None:
    _upload_dicom(app, real_dicom)
    level = next(s for s in app.slider if s.label.startswith("Level"))
    before = app.image[0].proto
    level.set_value(level.min).run()
    _ok(app)
    assert f"/ L {level.min:.4g}" in app.image[0].proto.imgs[0].caption and app.image[0].proto != before
    next(s for s in app.slider if s.label == "Zoom").set_value(2.0).run()
    assert "zoom 2x" in app.image[0].proto.imgs[0].caption
    app.button(key=f"viewer_{app.session_state['case'].serial}_reset").click().run()
    _ok(app)
    caption = app.image[0].proto.imgs[0].caption
    assert caption.endswith("W 254 / L 127") and "zoom" not in caption  # back to the image's own range


def test_retrieve_page_gallery(app: AppTest, real_dicom: Path) -> None:
    _upload_dicom(app, real_dicom)
    app.switch_page("views/retrieve.py").run()
    _ok(app)
    cards = [m.value for m in app.markdown if m.value.startswith("**#")]
    assert len(cards) == 8 and cards[0].startswith("**#1** · score")
    assert len(app.image) >= 8  # a thumbnail per study
    app.checkbox(key=f"q_cxr_{app.session_state['case'].serial}").uncheck()
    app.text_input(key="q_text").input("moderate cardiomegaly").run()
    _ok(app)
    assert "reports ->" not in app.caption[-1].value
    assert [m.value for m in app.markdown if m.value.startswith("**#")]


def test_retrieve_by_an_index_study_and_joint_query(app: AppTest, app_index: Path) -> None:
    app.switch_page("views/retrieve.py").run()
    assert "Upload an X-ray or ECG" in app.info[0].value
    app.button(key="open_study").click().run()
    _ok(app)
    case = app.session_state["case"]
    assert case.cxr is not None and case.ecg is not None and case.origin.startswith("index study")
    caption = next(c.value for c in app.caption if "->" in c.value)
    assert "X-rays + ECGs -> reports (joint query" in caption


def test_ground_page_heatmaps(app: AppTest, real_dicom: Path, ptbxl_record: tuple[Path, Path]) -> None:
    _upload_dicom(app, real_dicom)
    app.file_uploader[0].set_value([(p.name, p.read_bytes(), "application/octet-stream") for p in ptbxl_record])
    app.run()
    app.switch_page("views/ground.py").run()
    _ok(app)
    assert [s.value for s in app.subheader] == ["Chest X-ray", "12-lead ECG"]
    serial = app.session_state["case"].serial
    assert app.text_input(key=f"phrase_cxr_{serial}").value  # suggested from the Diagnose page's best finding
    ecg_phrase = app.text_input(key=f"phrase_ecg_{serial}").value
    assert ecg_phrase in {"normal ECG", "myocardial infarction", "ST-T changes", "conduction disturbance",
                          "left ventricular hypertrophy"}  # the top ECG class's first positive prompt
    app.text_input(key=f"phrase_cxr_{serial}").input("left pleural effusion").run()
    app.slider(key="opacity").set_value(0.8).run()
    _ok(app)
    assert any("'left pleural effusion' on the X-ray" in i.caption for img in app.image for i in img.proto.imgs)
    assert any("segments" in m.value for m in app.markdown)
    # the tiny run's towers are [CLS]-pooled transformers: contribution maps are not offered
    assert app.radio(key="readout").options == ["auto", "cosine (BioViL)"]
    app.radio(key="readout").set_value("cosine").run()
    _ok(app)
    assert any("shading: cosine similarity" in i.caption for img in app.image for i in img.proto.imgs)
    assert not any("blurred" in i.caption for img in app.image for i in img.proto.imgs)
    app.slider(key="smooth").set_value(1.5).run()  # BioViL's engine's blur
    _ok(app)
    assert any("map blurred by 1.5 cells" in i.caption for img in app.image for i in img.proto.imgs)


def test_no_run_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDCLR_RUN", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert "No run configured" in at.error[0].value and not at.exception
