"""The manifest schema: parquet round trip with its metadata, atomic writes, and the checks on every read."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medclr.data import Manifest, ManifestInfo, read_manifest, write_manifest
from medclr.data.manifest import check_frame, normalise_frame
from medclr.errors import MedclrInputError


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "study_id": ["s1", "s2", "s3"],
            "subject_id": ["p1", "p1", "p2"],
            "split": ["train", "val", "test"],
            "cxr_path": ["a/1.png", None, "b/3.dcm"],
            "report": ["No acute disease.", "Cardiomegaly.", None],
            "study_time": ["2020-01-01 10:00", None, "2021-05-02 08:30"],
            "label/Cardiomegaly": [0.0, 1.0, np.nan],
            "label/Edema": [0.25, 0.0, 1.0],
            "meta/age": [61, 62, 70],
        }
    )


def _info(**kw: object) -> ManifestInfo:
    base: dict[str, object] = {
        "source": "unit",
        "roots": {"cxr": "/data/cxr"},
        "split_protocol": "hand-made",
        "label_sets": {"findings": ["Cardiomegaly", "Edema"]},
        "label_policy": {"uncertain": "U-Ignore: -1 -> NaN"},
        "extra": {"note": "x", "n": 3},
    }
    return ManifestInfo(**{**base, **kw})  # type: ignore[arg-type]


def test_round_trip_keeps_rows_dtypes_and_metadata(tmp_path: Path) -> None:
    out = write_manifest(Manifest(_frame(), _info()), tmp_path / "m.parquet")
    m = read_manifest(out)
    assert len(m) == 3 and m.path == out
    assert m.frame["study_id"].tolist() == ["s1", "s2", "s3"]
    assert m.frame["label/Edema"].dtype == np.float32
    assert m.frame["cxr_path"].tolist()[:2] == ["a/1.png", pd.NA]
    assert pd.Timestamp("2021-05-02 08:30") == m.frame.loc[2, "study_time"]
    assert m.info.source == "unit" and m.info.roots == {"cxr": "/data/cxr"}
    assert m.info.label_sets == {"findings": ["Cardiomegaly", "Edema"]}
    assert m.info.label_policy == {"uncertain": "U-Ignore: -1 -> NaN"}
    assert m.info.extra == {"note": "x", "n": 3}
    assert m.info.created and m.info.medclr_version
    assert m.labels == ["Cardiomegaly", "Edema"]
    assert m.modalities == ["cxr", "report"]
    assert m.split("val").frame["study_id"].tolist() == ["s2"]


def test_columns_are_put_in_schema_order() -> None:
    frame = normalise_frame(_frame()[["meta/age", "label/Edema", "split", "study_id", "subject_id", "report"]])
    assert list(frame.columns) == ["study_id", "subject_id", "split", "report", "label/Edema", "meta/age"]


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    write_manifest(Manifest(_frame(), _info()), tmp_path / "m.parquet")
    write_manifest(Manifest(_frame().iloc[:2], _info()), tmp_path / "m.parquet")  # overwrite in place
    assert [p.name for p in tmp_path.iterdir()] == ["m.parquet"]
    assert len(read_manifest(tmp_path / "m.parquet")) == 2


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    out = write_manifest(Manifest(_frame(), _info()), tmp_path / "m.parquet")
    bad = _frame().assign(split=["train", "holdout", "test"])
    with pytest.raises(MedclrInputError):
        write_manifest(Manifest(bad, _info()), out)
    assert [p.name for p in tmp_path.iterdir()] == ["m.parquet"]
    assert len(read_manifest(out)) == 3


def test_crash_during_write_leaves_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = write_manifest(Manifest(_frame(), _info()), tmp_path / "m.parquet")

    def half_write(table: pa.Table, where: Path) -> None:
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr("medclr.data.manifest.pq.write_table", half_write)
    with pytest.raises(OSError, match="disk full"):
        write_manifest(Manifest(_frame().iloc[:1], _info()), out)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["m.parquet"]
    assert len(read_manifest(out)) == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.assign(study_id=["s1", "s1", "s3"]), "study_id must be unique"),
        (lambda f: f.assign(study_id=["s1", None, "s3"]), "study_id must be unique"),
        (lambda f: f.assign(split=["train", "dev", "test"]), "invalid split"),
        (lambda f: f.assign(split=["train", None, "test"]), "invalid split"),
        (lambda f: f.assign(**{"label/Edema": [0.0, 2.0, 1.0]}), "label column 'label/Edema' holds 2"),
        (lambda f: f.assign(**{"label/Edema": [0.0, -1.0, 1.0]}), "holds -1"),
        (lambda f: f.assign(age=[1, 2, 3]), "unknown column(s) age"),
        (lambda f: f.drop(columns=["split"]), "lacks column(s) split"),
        (lambda f: f.drop(columns=["cxr_path", "report"]), "no modality column"),
    ],
)
def test_check_frame_rejects_schema_violations(change, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MedclrInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_frame(change(_frame()), "m.parquet")


def test_read_checks_a_file_written_by_hand(tmp_path: Path) -> None:
    table = pa.Table.from_pandas(_frame().assign(split=["train", "train", "unknown"]), preserve_index=False)
    info = _info().to_json().encode()
    pq.write_table(table.replace_schema_metadata({b"medclr": info}), tmp_path / "bad.parquet")
    with pytest.raises(MedclrInputError, match="invalid split"):
        read_manifest(tmp_path / "bad.parquet")
    pq.write_table(pa.Table.from_pandas(_frame()), tmp_path / "plain.parquet")
    with pytest.raises(MedclrInputError, match="no medclr manifest metadata"):
        read_manifest(tmp_path / "plain.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(MedclrInputError, match="not a readable parquet"):
        read_manifest(tmp_path / "junk.parquet")
    with pytest.raises(MedclrInputError, match="manifest not found"):
        read_manifest(tmp_path / "absent.parquet")


def test_newer_schema_and_corrupt_metadata_are_refused(tmp_path: Path) -> None:
    table = pa.Table.from_pandas(_frame(), preserve_index=False)
    newer = _info(schema_version=99).to_json().encode()
    pq.write_table(table.replace_schema_metadata({b"medclr": newer}), tmp_path / "new.parquet")
    with pytest.raises(MedclrInputError, match="newer than this medclr"):
        read_manifest(tmp_path / "new.parquet")
    pq.write_table(table.replace_schema_metadata({b"medclr": b"{not json"}), tmp_path / "corrupt.parquet")
    with pytest.raises(MedclrInputError, match="corrupt medclr manifest metadata"):
        read_manifest(tmp_path / "corrupt.parquet")


def test_roots_override_on_read(tmp_path: Path) -> None:
    old = _info(roots={"cxr": "/old/cxr", "ecg": "/old/ecg"})
    out = write_manifest(Manifest(_frame(), old), tmp_path / "m.parquet")
    m = read_manifest(out, roots={"cxr": tmp_path / "moved"})
    assert m.info.roots == {"cxr": str(tmp_path / "moved"), "ecg": "/old/ecg"}
    assert m.resolve("cxr", "a/1.png") == tmp_path / "moved" / "a" / "1.png"
    assert read_manifest(out).info.roots["cxr"] == "/old/cxr"  # the file itself is unchanged
    no_ecg = read_manifest(write_manifest(Manifest(_frame(), _info()), tmp_path / "n.parquet"))
    with pytest.raises(MedclrInputError, match="no root for ecg"):
        no_ecg.resolve("ecg", "x")


def test_label_matrix_keeps_nan_for_unknown(tmp_path: Path) -> None:
    m = read_manifest(write_manifest(Manifest(_frame(), _info()), tmp_path / "m.parquet"))
    matrix = m.label_matrix()
    assert matrix.dtype == np.float32 and matrix.shape == (3, 2)
    assert math.isnan(matrix[2, 0]) and matrix[1, 0] == 1.0 and matrix[0, 1] == pytest.approx(0.25)
    assert m.label_matrix(["Edema"]).tolist() == [[0.25], [0.0], [1.0]]
    with pytest.raises(MedclrInputError, match="no label"):
        m.label_matrix(["Pneumothorax"])
