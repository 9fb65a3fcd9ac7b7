"""Write synthetic studies in the real datasets' own layouts, so the real adapters read them unchanged.

=================== ==========================================================================================
folder              layout (as the dataset distributes it)
=================== ==========================================================================================
``mimic-cxr/``      MIMIC-CXR v2 DICOM tree ``files/pXX/pSUBJECT/sSTUDY/DICOM_ID.dcm``, reports
                    ``files/pXX/pSUBJECT/sSTUDY.txt``, and the MIMIC-CXR-JPG tables
                    ``mimic-cxr-2.0.0-{metadata,split,chexpert}.csv.gz``
``mimic-iv-ecg/``   MIMIC-IV-ECG v1.0: ``record_list.csv``, ``machine_measurements.csv``,
                    ``files/pNNNN/pSUBJECT/sSTUDY/STUDY.{hea,dat}`` (500 Hz, 10 s)
``chexpert/``       CheXpert-v1.0-small: ``CheXpert-v1.0-small/{train,valid}.csv`` whose ``Path`` column starts
                    with ``CheXpert-v1.0-small/``, JPEGs ``{train,valid}/patientNNNNN/studyK/view1_frontal.jpg``
``ptbxl/``          PTB-XL v1.0.3: ``ptbxl_database.csv``, ``scp_statements.csv``, ``records500/``, ``records100/``
``ms-cxr/``         MS-CXR v1.1.0 grounding CSV (phrase, category, box in original pixels, MIMIC path, split)
=================== ==========================================================================================

Each writer takes plain values; :mod:`medclr.synth.world` decides what goes where. Table rows are collected
and written once at the end (:func:`write_tables`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import RLELossless, generate_uid

CHEXPERT_LABELS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
    "Support Devices",
)
MIMIC_ECG_LEADS = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")  # MIMIC-IV-ECG order
_CR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage


def mimic_cxr_study_dir(subject_id: int, study_id: int) -> str:
    """``files/p10/p10000032/s50414267`` (the first two digits of the subject id name the group folder)."""
    return f"files/p{str(subject_id)[:2]}/p{subject_id}/s{study_id}"


def mimic_ecg_record(subject_id: int, study_id: int) -> str:
    """``files/p1000/p10000032/s40689238/40689238`` (the first four digits of the subject id)."""
    return f"files/p{str(subject_id)[:4]}/p{subject_id}/s{study_id}/{study_id}"


def write_dicom(
    path: Path, stored: np.ndarray, *, bits_stored: int, monochrome1: bool, view: str, when: datetime,
    subject_id: int, study_uid: str, spacing_mm: float,
) -> None:
    """A CR chest radiograph, RLE Lossless compressed (as PACS exports often are).

    Only synthetic identifiers go in: PatientID is the (synthetic) subject id; no names, birth dates or
    institutions, as in MIMIC-CXR's de-identified DICOMs. The series and instance UIDs are derived from
    ``study_uid`` (pydicom's hashed ``generate_uid`` with it as the entropy source), so a world's files repeat byte
    for byte for a seed.
    """
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = _CR_SOP_CLASS
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[study_uid, "instance"])
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[study_uid, "series"])
    ds.Modality = "CR"
    ds.PatientID = str(subject_id)
    ds.StudyDate, ds.StudyTime = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    ds.ViewPosition = view
    ds.BodyPartExamined = "CHEST"
    ds.PixelSpacing = [f"{spacing_mm:.3f}", f"{spacing_mm:.3f}"]
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    full = 2**bits_stored
    ds.WindowCenter, ds.WindowWidth = f"{full / 2:.0f}", f"{full:.0f}"
    ds.compress(RLELossless, np.ascontiguousarray(stored.astype(np.uint16)), generate_instance_uid=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_jpeg(path: Path, image01: np.ndarray, quality: int = 92) -> None:
    """An 8-bit grayscale JPEG of a display image in [0, 1] (CheXpert and MIMIC-CXR-JPG are 8-bit JPEGs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.clip(np.round(image01 * 255.0), 0, 255).astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(path, quality=quality)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def mimic_chexpert_row(subject_id: int, study_id: int, facts: Mapping[str, float]) -> dict[str, Any]:
    """A ``mimic-cxr-2.0.0-chexpert.csv`` row: 1.0 / 0.0 / -1.0 (uncertain) / blank (not mentioned)."""
    row: dict[str, Any] = {"subject_id": subject_id, "study_id": study_id}
    row.update({label: facts.get(label, np.nan) for label in CHEXPERT_LABELS})
    return row


def chexpert_row(path: str, sex: str, age: int, view: str, labels: Mapping[str, float]) -> dict[str, Any]:
    """A CheXpert ``train.csv`` / ``valid.csv`` row (frontal images only in the synthetic world)."""
    row: dict[str, Any] = {"Path": path, "Sex": "Male" if sex == "M" else "Female", "Age": age,
                           "Frontal/Lateral": "Frontal", "AP/PA": view}
    row.update({label: labels.get(label, np.nan) for label in CHEXPERT_LABELS})
    return row


def scp_statements() -> pd.DataFrame:
    """The PTB-XL statements the simulator renders, with PTB-XL's columns, codes and classes."""
    rows = [
        ("NORM", "normal ECG", 1, None, None, "NORM", "NORM"),
        ("AMI", "anterior myocardial infarction", 1, None, None, "MI", "AMI"),
        ("IMI", "inferior myocardial infarction", 1, None, None, "MI", "IMI"),
        ("LMI", "lateral myocardial infarction", 1, None, None, "MI", "LMI"),
        ("NST_", "non-specific ST changes", 1, 1, None, "STTC", "NST_"),
        ("CLBBB", "complete left bundle branch block", 1, None, None, "CD", "CLBBB"),
        ("CRBBB", "complete right bundle branch block", 1, None, None, "CD", "CRBBB"),
        ("1AVB", "first degree AV block", 1, None, None, "CD", "_AVB"),
        ("LVH", "left ventricular hypertrophy", 1, None, None, "HYP", "LVH"),
        ("STE_", "non-specific ST elevation", None, 1, None, None, None),
        ("SR", "sinus rhythm", None, None, 1, None, None),
        ("AFIB", "atrial fibrillation", None, None, 1, None, None),
        ("STACH", "sinus tachycardia", None, None, 1, None, None),
        ("SBRAD", "sinus bradycardia", None, None, 1, None, None),
    ]
    cols = ["", "description", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"]
    frame = pd.DataFrame(rows, columns=cols)
    for extra in ("Statement Category", "SCP-ECG Statement Description", "AHA code", "aECG REFID", "CDISC Code",
                  "DICOM Code"):
        frame[extra] = frame["description"] if extra == "SCP-ECG Statement Description" else None
    return frame


def ptbxl_scp_codes(ecg: Any) -> dict[str, float]:
    """``scp_codes`` for an :class:`~medclr.synth.state.EcgFindings` (likelihood 100 for diagnoses, 0 rhythm)."""
    codes: dict[str, float] = {}
    if ecg.superclasses["NORM"]:
        codes["NORM"] = 100.0
    if ecg.mi_territory is not None:
        codes[{"anterior": "AMI", "inferior": "IMI", "lateral": "LMI"}[ecg.mi_territory]] = 100.0
        if ecg.mi_acute:
            codes["STE_"] = 0.0
    if ecg.sttc:
        codes["NST_"] = 100.0
    if ecg.conduction is not None:
        codes[{"LBBB": "CLBBB", "RBBB": "CRBBB", "AVB1": "1AVB"}[ecg.conduction]] = 100.0
    if ecg.lvh:
        codes["LVH"] = 100.0
    codes[ecg.rhythm] = 0.0
    return codes


def write_tables(root: Path, tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Write each collected table (``relative path -> rows``); ``.gz`` paths are gzip-compressed by pandas."""
    for relative, rows in tables.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(list(rows))
        frame.to_csv(path, index=False)
