"""Write exact MIMIC-CXR-JPG, MIMIC-CXR (DICOM), CheXpert and MS-CXR trees at test time, from lists of records.

MIMIC-CXR-JPG v2.0.0 / v2.1.0 (Johnson et al., 2019) as distributed on PhysioNet::

    ROOT/mimic-cxr-2.0.0-metadata.csv.gz    dicom_id, subject_id, study_id, PerformedProcedureStepDescription,
                                            ViewPosition, Rows, Columns, StudyDate, StudyTime,
                                            ProcedureCodeSequence_CodeMeaning, ViewCodeSequence_CodeMeaning,
                                            PatientOrientationCodeSequence_CodeMeaning      (one row per image)
    ROOT/mimic-cxr-2.0.0-split.csv.gz       dicom_id, study_id, subject_id, split (train | validate | test)
    ROOT/mimic-cxr-2.0.0-chexpert.csv.gz    subject_id, study_id, 14 CheXpert labels (1.0 / 0.0 / -1.0 / blank)
    ROOT/files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg

MIMIC-CXR v2.0.0 (DICOM) has the same ``files/`` tree with ``.dcm`` images and one report per study beside the
study folder (``files/p10/p10000032/s50414267.txt``), and ships the reports again as ``mimic-cxr-reports.zip``.
``StudyDate`` is ``YYYYMMDD`` (shifted to 2100-2200 by the de-identification), ``StudyTime`` ``HHMMSS.fff``
written as a number (so 08:47:16 is ``84716.0``). The group folder ``p10`` is ``p`` + the first two digits of
the subject id.

CheXpert v1.0 (Irvin et al., 2019)::

    CheXpert-v1.0-small/train.csv           Path, Sex, Age, Frontal/Lateral, AP/PA, 14 labels
    CheXpert-v1.0-small/valid.csv           same columns
    CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg

``Path`` starts with the dataset folder name (``CheXpert-v1.0-small/train/...``). The test set
(``test_labels.csv``: Path + labels, released with CheXlocalize) is written when test images are given.

MS-CXR v1.1.0 (Boecking et al., 2022): ``MS_CXR_Local_Alignment_v1.1.0.csv`` with dicom_id, category_name,
label_text, path, x, y, w, h, image_width, image_height, split (v1.0.0: the same without ``split``).

Writing is fast: one JPEG and one DICOM per image size is encoded once and its bytes copied to every path, so
a 1,000-image tree takes well under a second. Set ``write_file=False`` on a record to leave its image out.
"""

from __future__ import annotations

import functools
import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from tests.io.cxr_fixtures import dicom_dataset, phantom, quantize

CHEXPERT_LABELS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
    "Support Devices",
)
METADATA_COLUMNS = (
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns",
    "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
MIMIC_LABEL_COLUMNS = ("subject_id", "study_id", *CHEXPERT_LABELS)
CHEXPERT_COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS)
MS_CXR_COLUMNS = ("dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width",
                  "image_height", "split")
VIEW_MEANINGS = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral", "LL": "left lateral"}
ROWS, COLUMNS = 48, 40  # pixels of every generated image (the readers reject sides under 32)

LabelCell = float | str
"""A label cell as written: 1.0, 0.0, -1.0, or a string for corrupt cells; a label left out is blank."""


# --- image bytes ---------------------------------------------------------------------------------------------------

@functools.cache
def jpeg_bytes(rows: int = ROWS, columns: int = COLUMNS) -> bytes:
    """An 8-bit grayscale JPEG of the test phantom (MIMIC-CXR-JPG and CheXpert images are 8-bit JPEGs)."""
    buf = io.BytesIO()
    Image.fromarray(quantize(phantom(rows, columns), 8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@functools.cache
def dicom_bytes(rows: int = ROWS, columns: int = COLUMNS) -> bytes:
    """A 12-bit MONOCHROME2 DX DICOM of the test phantom, native Explicit VR Little Endian."""
    ds = dicom_dataset(quantize(phantom(rows, columns), 12), bits_stored=12, ViewPosition="PA")
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_image(path: Path, fmt: str, rows: int = ROWS, columns: int = COLUMNS) -> Path:
    """Write the phantom as ``fmt`` (``jpg`` or ``dcm``) at ``path``, creating its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(rows, columns) if fmt == "jpg" else dicom_bytes(rows, columns))
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut ``path`` to ``keep`` of its bytes (a download that stopped half way)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, object]]) -> Path:
    """A CSV with exactly ``columns`` (missing cells blank); ``.gz`` paths are gzip-compressed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=list(columns)).to_csv(path, index=False)
    return path


# --- MIMIC-CXR -----------------------------------------------------------------------------------------------------

@dataclass
class MimicImage:
    """One image of MIMIC-CXR: its rows in the metadata and split tables, and (unless ``write_file``) its file."""

    subject_id: int
    study_id: int
    dicom_id: str
    view: str = "PA"  # ViewPosition; "" is blank
    split: str = "train"  # as the split table writes it: train | validate | test
    study_date: int | str = 21800506
    study_time: float | str = 213014.531
    rows: int = ROWS
    columns: int = COLUMNS
    view_meaning: str | None = None  # ViewCodeSequence_CodeMeaning (default: from the view)
    write_file: bool = True
    in_split_table: bool = True

    def path(self, fmt: str) -> str:
        """``files/p10/p10000032/s50414267/<dicom_id>.<fmt>``."""
        return f"{mimic_study_dir(self.subject_id, self.study_id)}/{self.dicom_id}.{fmt}"

    def metadata_row(self) -> dict[str, object]:
        procedure = "CHEST (PA AND LAT)" if self.view in ("PA", "LATERAL") else "CHEST (PORTABLE AP)"
        meaning = self.view_meaning if self.view_meaning is not None else VIEW_MEANINGS.get(self.view, "")
        return {
            "dicom_id": self.dicom_id, "subject_id": self.subject_id, "study_id": self.study_id,
            "PerformedProcedureStepDescription": procedure, "ViewPosition": self.view or None, "Rows": self.rows,
            "Columns": self.columns, "StudyDate": self.study_date, "StudyTime": self.study_time,
            "ProcedureCodeSequence_CodeMeaning": procedure, "ViewCodeSequence_CodeMeaning": meaning or None,
            "PatientOrientationCodeSequence_CodeMeaning": "Erect" if self.view == "PA" else "Recumbent",
        }


@dataclass
class MimicLabels:
    """One row of ``mimic-cxr-2.0.0-chexpert.csv``; labels left out are blank (not mentioned)."""

    subject_id: int
    study_id: int
    labels: Mapping[str, LabelCell] = field(default_factory=dict)


@dataclass
class MimicReport:
    """The free-text report of one study (``bytes`` to write undecodable files)."""

    subject_id: int
    study_id: int
    text: str | bytes


def mimic_study_dir(subject_id: int, study_id: int) -> str:
    """``files/p10/p10000032/s50414267``: the group folder is ``p`` + the first two digits of the subject id."""
    return f"files/p{str(subject_id)[:2]}/p{subject_id}/s{study_id}"


def mimic_report(findings: str, impression: str, indication: str = "___-year-old with cough.") -> str:
    """A report laid out as MIMIC-CXR writes them (title line, headings in capitals, wrapped lines)."""
    return (
        "                                 FINAL REPORT\n"
        " EXAMINATION:  CHEST (PA AND LAT)\n \n"
        f" INDICATION:  {indication}\n \n"
        " COMPARISON:  None.\n \n"
        f" FINDINGS: \n \n {findings}\n \n"
        f" IMPRESSION: \n \n {impression}\n"
    )


def write_mimic_tables(folder: Path, images: Sequence[MimicImage], labels: Sequence[MimicLabels], *,
                       gz: bool = True) -> None:
    """The three MIMIC-CXR-JPG tables (metadata, split, chexpert) in ``folder``."""
    suffix = ".csv.gz" if gz else ".csv"
    _write_csv(folder / f"mimic-cxr-2.0.0-metadata{suffix}", METADATA_COLUMNS, [i.metadata_row() for i in images])
    split_rows = [{"dicom_id": i.dicom_id, "study_id": i.study_id, "subject_id": i.subject_id, "split": i.split}
                  for i in images if i.in_split_table]
    _write_csv(folder / f"mimic-cxr-2.0.0-split{suffix}", SPLIT_COLUMNS, split_rows)
    label_rows = [{"subject_id": lab.subject_id, "study_id": lab.study_id, **lab.labels} for lab in labels]
    _write_csv(folder / f"mimic-cxr-2.0.0-chexpert{suffix}", MIMIC_LABEL_COLUMNS, label_rows)


def write_mimic_images(folder: Path, images: Sequence[MimicImage], fmt: str) -> None:
    """Each image's file under ``folder/files/...`` (``fmt``: ``jpg`` or ``dcm``)."""
    for image in images:
        if image.write_file:
            write_image(folder / image.path(fmt), fmt, image.rows, image.columns)


def write_mimic_reports(folder: Path, reports: Sequence[MimicReport]) -> None:
    """Reports as the MIMIC-CXR tree holds them: ``folder/files/pXX/pSUBJECT/sSTUDY.txt``."""
    for report in reports:
        path = folder / f"{mimic_study_dir(report.subject_id, report.study_id)}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = report.text if isinstance(report.text, bytes) else report.text.encode("utf-8")
        path.write_bytes(data)


def write_mimic_reports_zip(path: Path, reports: Sequence[MimicReport], prefix: str = "") -> Path:
    """``mimic-cxr-reports.zip``: members ``<prefix>files/pXX/pSUBJECT/sSTUDY.txt``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for report in reports:
            name = f"{prefix}{mimic_study_dir(report.subject_id, report.study_id)}.txt"
            archive.writestr(name, report.text if isinstance(report.text, bytes) else report.text.encode("utf-8"))
    return path


def write_mimic_cxr_jpg(root: Path, images: Sequence[MimicImage], labels: Sequence[MimicLabels], *,
                        gz: bool = True) -> Path:
    """A MIMIC-CXR-JPG folder: the three tables and ``files/`` with JPEGs. Returns ``root``."""
    write_mimic_tables(root, images, labels, gz=gz)
    write_mimic_images(root, images, "jpg")
    return root


def write_mimic_cxr_dicom(root: Path, images: Sequence[MimicImage], reports: Sequence[MimicReport]) -> Path:
    """A MIMIC-CXR (DICOM) folder: ``files/`` with DICOMs and the study reports beside the study folders."""
    write_mimic_images(root, images, "dcm")
    write_mimic_reports(root, reports)
    return root


# --- CheXpert ------------------------------------------------------------------------------------------------------

@dataclass
class ChexpertImage:
    """One row of a CheXpert table (``table``: train, valid or test) and its JPEG."""

    patient: int
    study: int
    view: int = 1
    frontal: bool = True
    ap_pa: str | None = "PA"  # AP/PA; blank for laterals
    sex: str = "Female"
    age: int | str = 68
    labels: Mapping[str, LabelCell] = field(default_factory=dict)
    table: str = "train"
    write_file: bool = True

    def path(self) -> str:
        """``train/patient00001/study1/view1_frontal.jpg`` (relative to the dataset folder)."""
        kind = "frontal" if self.frontal else "lateral"
        return f"{self.table}/patient{self.patient:05d}/study{self.study}/view{self.view}_{kind}.jpg"


def write_chexpert(root: Path, images: Sequence[ChexpertImage], *, release: str = "CheXpert-v1.0-small",
                   path_prefix: bool = True) -> Path:
    """``root/<release>/`` with train.csv, valid.csv (and test_labels.csv if any test image) and the JPEGs.

    ``path_prefix`` writes ``Path`` as distributed (``CheXpert-v1.0-small/train/...``); False writes it relative
    to the dataset folder. Returns the dataset folder.
    """
    dataset = root / release
    for table, name in (("train", "train.csv"), ("valid", "valid.csv"), ("test", "test_labels.csv")):
        rows = [i for i in images if i.table == table]
        if table == "test" and not rows:
            continue
        columns = ("Path", *CHEXPERT_LABELS) if table == "test" else CHEXPERT_COLUMNS
        _write_csv(dataset / name, columns, [_chexpert_row(i, release if path_prefix else None) for i in rows])
    for image in images:
        if image.write_file:
            write_image(dataset / image.path(), "jpg")
    return dataset


def _chexpert_row(image: ChexpertImage, prefix: str | None) -> dict[str, object]:
    path = f"{prefix}/{image.path()}" if prefix else image.path()
    return {"Path": path, "Sex": image.sex, "Age": image.age, "Frontal/Lateral": "Frontal" if image.frontal
            else "Lateral", "AP/PA": image.ap_pa if image.frontal else None, **image.labels}


# --- MS-CXR --------------------------------------------------------------------------------------------------------

@dataclass
class MsCxrBox:
    """One row of the MS-CXR CSV: a box of a phrase on a MIMIC-CXR image (pixels of the original image)."""

    dicom_id: str
    subject_id: int
    study_id: int
    category: str
    phrase: str
    x: float | str
    y: float
    w: float
    h: float
    width: int = COLUMNS
    height: int = ROWS
    split: str = "test"

    def path(self, fmt: str = "dcm") -> str:
        return f"{mimic_study_dir(self.subject_id, self.study_id)}/{self.dicom_id}.{fmt}"


def write_ms_cxr(folder: Path, boxes: Sequence[MsCxrBox], *, version: str = "1.1.0", fmt: str = "dcm") -> Path:
    """``folder/MS_CXR_Local_Alignment_v<version>.csv`` (v1.0.0 has no split column); returns the CSV path."""
    columns = MS_CXR_COLUMNS if version != "1.0.0" else MS_CXR_COLUMNS[:-1]
    rows = [{"dicom_id": b.dicom_id, "category_name": b.category, "label_text": b.phrase, "path": b.path(fmt),
             "x": b.x, "y": b.y, "w": b.w, "h": b.h, "image_width": b.width, "image_height": b.height,
             "split": b.split} for b in boxes]
    return _write_csv(folder / f"MS_CXR_Local_Alignment_v{version}.csv", columns, rows)


def mimic_images_for_boxes(boxes: Sequence[MsCxrBox], split: str = "train") -> list[MimicImage]:
    """The MIMIC-CXR images the boxes are drawn on (one per dicom_id), at the boxes' image size."""
    seen: dict[str, MimicImage] = {}
    for b in boxes:
        seen.setdefault(b.dicom_id, MimicImage(b.subject_id, b.study_id, b.dicom_id, split=split, rows=b.height,
                                               columns=b.width))
    return list(seen.values())


def random_labels(rng: np.random.Generator, p_blank: float = 0.4) -> dict[str, float]:
    """CheXpert-style labels: each blank with ``p_blank``, else 1.0 / 0.0 / -1.0."""
    return {name: float(rng.choice([1.0, 0.0, -1.0])) for name in CHEXPERT_LABELS if rng.random() >= p_blank}
