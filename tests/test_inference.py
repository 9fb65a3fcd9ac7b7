"""The inference Engine on a tiny trained run: uploads judged by content, the training preprocessing, zero-shot,
retrieval and grounding shapes and ranges, and de-identification of everything it returns."""

from __future__ import annotations

import dataclasses
import io
import itertools
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from medclr.errors import MedclrInputError
from medclr.inference import Engine, Upload, check_run_dir
from medclr.io import read_cxr, read_ecg
from medclr.io.phi import PHI_KEYWORDS
from tests.apps.conftest import app_index, ptbxl_record, real_dicom  # noqa: F401 - re-exported fixtures
from tests.eval.conftest import trained_run  # noqa: F401 - re-exported fixture
from tests.models.conftest import tiny_bert_dir  # noqa: F401 - re-exported fixture
from tests.train.conftest import cache_root, world_manifest  # noqa: F401 - re-exported fixtures

CHEXPERT = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]


@pytest.fixture(scope="module")
def engine(trained_run: Path, app_index: Path) -> Engine:  # noqa: F811
    return Engine.from_run(trained_run, app_index)


def _strings(obj: Any) -> Iterator[str]:
    """Every string inside a returned object (dataclass fields, mappings, sequences; arrays skipped)."""
    if isinstance(obj, str):
        yield obj
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        yield repr(type(obj).__name__)
        for f in dataclasses.fields(obj):
            yield from _strings(getattr(obj, f.name))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _strings(v)
    elif obj is not None and not isinstance(obj, np.ndarray):
        yield str(obj)


def _identifying_values(ds: pydicom.Dataset) -> set[str]:
    values = {str(e.value).strip() for e in (*ds.iterall(), *ds.file_meta)
              if e.VR not in ("SQ", "OB", "OW") and (e.keyword in PHI_KEYWORDS or e.VR in ("PN", "UI", "DA"))}
    return {v for v in values if len(v) >= 4}


def _dicom_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------------- uploads
def test_real_dicom_is_read_by_content_whatever_its_name(engine: Engine, real_dicom: Path) -> None:  # noqa: F811
    data = real_dicom.read_bytes()
    for name in (real_dicom.name, "photo.png", "noextension"):
        up = engine.read_upload(name, data)
        assert up.kind == "cxr" and up.format == "DICOM" and up.array.shape == (1024, 1024)
        assert 0.0 <= up.array.min() <= up.array.max() <= 1.0
    assert up.view is not None and up.view.values.shape == (1024, 1024) and up.view.width > 0
    assert up.info["View"] == "PA" and up.header["Modality"] == "CR"


def test_png_named_dcm_is_a_png(engine: Engine, real_data: Path) -> None:
    png = next((real_data / "nih_chestxray14" / "images").glob("*.png")).read_bytes()
    up = engine.read_upload("scan.dcm", png)
    assert up.kind == "cxr" and up.format == "PNG" and up.header == {}
    assert up.view is not None and up.view.voi == "full range"


def test_wfdb_pair_zip_and_renamed_files(engine: Engine, ptbxl_record: tuple[Path, Path]) -> None:  # noqa: F811
    header, signal = (p.read_bytes() for p in ptbxl_record)
    expected, _ = read_ecg(ptbxl_record[0])
    together = engine.read_uploads([("00001_hr.hea", header), ("00001_hr.dat", signal)])
    assert [u.kind for u in together] == ["ecg"] and together[0].fs == 500.0
    np.testing.assert_array_equal(together[0].array, expected)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("record/00001_hr.hea", header)
        zf.writestr("record/00001_hr.dat", signal)
    zipped = engine.read_upload("ecg.zip", archive.getvalue())
    np.testing.assert_array_equal(zipped.array, expected)
    renamed = engine.read_uploads([("header.txt", header), ("signal.bin", signal)])  # paired by content
    np.testing.assert_array_equal(renamed[0].array, expected)


def test_csv_ecg_upload(engine: Engine, ptbxl_record: tuple[Path, Path]) -> None:  # noqa: F811
    signal, _ = read_ecg(ptbxl_record[0])
    rows = "\n".join(",".join(f"{v:.4f}" for v in column) for column in signal[:, :1000].T)
    text = "I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6\n" + rows + "\n"
    up = engine.read_upload("ecg.txt", text.encode(), csv_fs=500.0)
    assert up.kind == "ecg" and up.format == "CSV" and up.array.shape == (12, 1000) and up.fs == 500.0


@pytest.mark.parametrize(("files", "message"), [
    ([("00001_hr.hea", None)], "signal file '00001_hr.dat'"),
    ([("scan.dcm", b"\x00\x01\x02" * 100)], "not an image, ECG or WFDB header"),
    ([("notes.csv", b"just some words\nnothing else\n")], "notes.csv"),
])
def test_bad_uploads_are_friendly_errors(engine: Engine, ptbxl_record: tuple[Path, Path],  # noqa: F811
                                         files: list[tuple[str, bytes | None]], message: str) -> None:
    header = ptbxl_record[0].read_bytes()
    with pytest.raises(MedclrInputError) as err:
        engine.read_uploads([(n, header if d is None else d) for n, d in files])
    text = str(err.value)
    assert message in text and "/tmp" not in text and "medclr-upload" not in text


def test_too_large_upload_is_refused(engine: Engine, real_dicom: Path) -> None:  # noqa: F811
    small = Engine(engine.model, engine.settings, engine.loss, max_upload_bytes=50_000)
    with pytest.raises(MedclrInputError, match="limit is"):
        small.read_upload("x.dcm", real_dicom.read_bytes())  # 126 kB > 50 kB


def test_error_messages_mask_uid_file_names(engine: Engine, real_dicom: Path) -> None:  # noqa: F811
    truncated = real_dicom.read_bytes()[:2000]
    with pytest.raises(MedclrInputError) as err:
        engine.read_upload(real_dicom.name, truncated)
    assert real_dicom.stem not in str(err.value) and "<UID>" in str(err.value)


# ---------------------------------------------------------------------------------------------- de-identification
def test_real_dicom_identifiers_never_reach_returned_objects(engine: Engine, real_dicom: Path) -> None:  # noqa: F811
    ds = pydicom.dcmread(real_dicom)
    secrets = _identifying_values(ds) | {real_dicom.stem}
    assert {"16d7f894-55d7-4d95-8957-d18987f0e981", "19010101"} <= secrets  # PatientName/ID, StudyDate
    up = engine.read_upload(real_dicom.name, real_dicom.read_bytes())
    returned = [up, up.label, engine.diagnose(cxr=up), engine.retrieve({"cxr": up}, "report", 3)]
    text = "\n".join(s for obj in returned for s in _strings(obj))
    assert not [s for s in secrets if s in text]
    assert not set(up.header) & PHI_KEYWORDS


def test_planted_identifiers_are_dropped(engine: Engine, real_dicom: Path) -> None:  # noqa: F811
    ds = pydicom.dcmread(real_dicom)
    planted = {"PatientName": "Doe^Jane", "PatientID": "MRN-0042-77", "PatientBirthDate": "19611224",
               "PatientAddress": "12 Harbour Road, Springfield", "InstitutionName": "St Elsewhere Hospital",
               "ReferringPhysicianName": "House^Gregory", "AccessionNumber": "ACC99887766",
               "OtherPatientIDs": "OTHER-5511", "DeviceSerialNumber": "SN-123456", "StationName": "XRAY-ROOM-3",
               "OperatorsName": "Tech^Tina", "StudyID": "STUDY-777"}
    for keyword, value in planted.items():
        setattr(ds, keyword, value)
    ds.Manufacturer = "St Elsewhere Hospital"  # an allowlisted attribute holding an identifying value
    up = engine.read_upload("jane.dcm", _dicom_bytes(ds))
    text = "\n".join(_strings(up))
    assert not [v for v in (*planted.values(), "Doe", "Jane") if v in text]
    assert "Manufacturer" not in up.header and up.header["Modality"] == "CR"


# ---------------------------------------------------------------------------------------- training preprocessing
def test_embeddings_match_the_training_path(engine: Engine) -> None:
    index = engine.index
    assert index is not None
    row = int(index.positions["cxr"][0])
    study = engine.load_case(str(index.ids[row]))
    assert study.cxr is not None and study.ecg is not None
    stored = index.query_of(row, ["cxr", "ecg"])  # embedded by `medclr embed` through the cache
    np.testing.assert_allclose(engine.embed_cxr(study.cxr.array)[0], stored["cxr"], atol=1e-5)
    np.testing.assert_allclose(engine.embed_ecg(study.ecg.array, study.ecg.fs), stored["ecg"], atol=1e-5)
    vector = engine.embed_text("No acute cardiopulmonary process.")
    assert vector.shape == (index.embed_dim,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


# ------------------------------------------------------------------------------------ diagnose, retrieve, ground
def test_diagnose_shapes_and_ranges(engine: Engine, real_dicom: Path, ptbxl_record: tuple[Path, Path]) -> None:  # noqa: F811
    cxr = engine.read_upload("x", real_dicom.read_bytes())
    ecg = engine.read_uploads([(p.name, p.read_bytes()) for p in ptbxl_record])[0]
    alone = engine.diagnose(cxr=cxr)
    assert list(alone) == ["cxr"] and [s.label for s in alone["cxr"].scores] == CHEXPERT
    both = engine.diagnose(cxr=cxr, ecg=ecg)
    assert set(both) == {"cxr", "ecg", "joint"}
    assert [s.label for s in both["ecg"].scores] == ["NORM", "MI", "STTC", "CD", "HYP"]
    for diagnosis in both.values():
        for s in diagnosis.scores:
            assert np.isfinite(s.score) and (not s.probability or 0.0 <= s.score <= 1.0)
    joint = {s.label: s for s in both["joint"].scores}
    assert not joint["Heart Failure"].probability and joint["Discordant Cardiac Findings"].probability
    custom = engine.prompts_from_yaml("query: cxr\nlabels:\n  Edema: {positive: [edema], negative: [no edema]}\n")
    assert [s.label for s in engine.diagnose(cxr=cxr, prompts={"cxr": custom})["cxr"].scores] == ["Edema"]
    with pytest.raises(MedclrInputError) as err:
        engine.prompts_from_yaml("query: cxr\nlabels: []\n")
    assert "/tmp" not in str(err.value) and "labels" in str(err.value)


def test_retrieve_by_xray_text_and_joint(engine: Engine) -> None:
    index = engine.index
    assert index is not None
    row = int(index.positions["cxr"][0])
    study = engine.load_case(str(index.ids[row]))
    same = engine.retrieve({"cxr": study.cxr}, "cxr", 5)
    assert same[0].study_id == study.study_id and [h.rank for h in same] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in itertools.pairwise(same))
    assert same[0].cxr_path is not None and same[0].cxr_path.is_file()
    joint = engine.retrieve({"cxr": study.cxr, "ecg": study.ecg}, "report", 4)
    assert len(joint) == 4 and all(h.report for h in joint) and all(-1.0 <= h.score <= 1.0 for h in joint)
    assert len(engine.retrieve({"report": "moderate cardiomegaly"}, "ecg", 3)) == 3
    with pytest.raises(MedclrInputError):
        engine.retrieve({"cxr": study.cxr, "ecg": study.ecg}, "cxr", 3)  # the target may only be queried alone


def test_ground_shapes(engine: Engine, real_dicom: Path, ptbxl_record: tuple[Path, Path]) -> None:  # noqa: F811
    image, _ = read_cxr(real_dicom)
    heat = engine.ground_cxr(image, "pleural effusion")
    assert heat.shape == image.shape and heat.dtype == np.float32
    assert np.isfinite(heat).all() and -1.0 <= heat.min() <= heat.max() <= 1.0
    assert engine.map_label("cxr") == engine.map_label("cxr", "cosine") == "cosine similarity"  # a [CLS]-pooled ViT
    np.testing.assert_array_equal(engine.ground_cxr(image, "pleural effusion", "cosine"), heat)
    blurred = engine.ground_cxr(image, "pleural effusion", smooth=1.5)  # BioViL's engine's blur
    assert blurred.shape == heat.shape and not np.allclose(blurred, heat)
    assert heat.min() - 1e-6 <= blurred.min() <= blurred.max() <= heat.max() + 1e-6  # an average of the map
    with pytest.raises(ValueError, match="smoothing sigma"):
        engine.ground_cxr(image, "pleural effusion", smooth=-1.0)
    with pytest.raises(MedclrInputError, match="contribution maps need"):
        engine.ground_cxr(image, "pleural effusion", "contribution")
    assert engine.map_readouts(["cxr", "ecg"]) == ("auto", "cosine")
    signal, meta = read_ecg(ptbxl_record[0])
    g = engine.ground_ecg(signal, "ST elevation", meta.fs)
    assert g.map.shape == (12, engine.settings.ecg_samples) and g.fs == engine.settings.ecg_fs
    assert g.lead_scores.shape == (12,) and g.offset_s == 0.0
    assert all(0.0 <= a < b <= 10.0 for a, b in g.segments())


def test_run_dir_checks(tmp_path: Path, trained_run: Path) -> None:  # noqa: F811
    assert check_run_dir(trained_run) == trained_run.resolve()
    with pytest.raises(MedclrInputError, match="no such folder"):
        check_run_dir(tmp_path / "missing")
    with pytest.raises(MedclrInputError, match=r"missing config\.yaml"):
        check_run_dir(tmp_path)


def test_upload_is_frozen_and_nameless(engine: Engine, real_dicom: Path) -> None:  # noqa: F811
    up = engine.read_upload(real_dicom.name, real_dicom.read_bytes())
    assert isinstance(up, Upload) and "name" not in {f.name for f in dataclasses.fields(up)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        up.kind = "ecg"  # type: ignore[misc]
