"""Open-i / Indiana University chest X-ray collection (Demner-Fushman et al., 2016): 3,955 reports, 7,470 images.

Layout read as distributed in the Kaggle mirror (``raddar/chest-xrays-indiana-university``), which converts
the Open-i XML reports and DICOMs to two CSVs and PNGs::

    ROOT/indiana_reports.csv       uid, MeSH, Problems, image, indication, comparison, findings, impression
    ROOT/indiana_projections.csv   uid, filename, projection (Frontal | Lateral)      [optional]
    ROOT/images/images_normalized/1_IM-0001-4001.dcm.png ...                           [optional]

- **Rows**: one per report ``uid`` (``study_id = "openi-<uid>"``). ``report`` = findings then impression,
  cleaned (:func:`medclr.io.report_sources.read_indiana_reports`: the de-identifier's ``XXXX`` removed). A
  report with neither findings nor impression is rejected with ``empty report`` (25 of the 3,851 rows of the
  Kaggle CSV). ``cxr_path`` is the report's first frontal image (file order of the projections CSV) when the
  projections CSV and the image folder are present, with ``cxr_view = "FRONTAL"`` (the projections say only
  frontal/lateral, not PA/AP); otherwise the row is report-only (a valid manifest of one modality). A frontal
  image listed but absent from the folder rejects the row (``image file not found``).
- **Split**: no official split and no patient identifier is distributed, so each report is its own subject
  (``subject_id = uid``) and :func:`medclr.data.splits.hash_split` of the uid gives 80/10/10.
- **Labels** (set ``problems``, policy ``mesh_problems``): the ``Problems`` column lists the main MeSH terms
  that annotators coded for the report (``normal`` when nothing abnormal was coded, ``No Indexing`` when the
  report was not coded). Only terms with an obvious CheXpert (Irvin et al., 2019) counterpart become labels
  (:data:`PROBLEM_LABELS`); a label is 1 when one of its terms is listed, else 0, and every label is NaN for
  ``No Indexing``. ``No Finding`` is 1 only for ``normal``. Other terms (Calcified Granuloma, Thoracic
  Vertebrae, Cicatrix, ...) make no label but do make ``No Finding`` 0. ``Enlarged Cardiomediastinum`` and
  ``Pleural Other`` have no unambiguous term and are not derived. The full term lists stay in
  ``meta/problems`` and ``meta/mesh``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from medclr.data.manifest import LABEL_PREFIX, Manifest, ManifestInfo
from medclr.data.prepare import SOURCES, PrepareOptions, SourceResult
from medclr.data.splits import hash_split, hash_split_protocol
from medclr.data.validate import Problem
from medclr.io.report_sources import read_indiana_reports
from medclr.io.tables import read_table

REPORTS = "indiana_reports.csv"
PROJECTIONS = "indiana_projections.csv"
PROJECTION_COLUMNS = ("uid", "filename", "projection")
IMAGE_DIRS = ("images/images_normalized", "images_normalized", "images")
NO_INDEXING = "No Indexing"
NORMAL = "normal"
PROBLEM_LABELS: dict[str, tuple[str, ...]] = {
    "No Finding": (NORMAL,),
    "Cardiomegaly": ("Cardiomegaly",),
    "Lung Opacity": ("Opacity", "Airspace Disease", "Infiltrate"),
    "Lung Lesion": ("Nodule", "Mass"),
    "Edema": ("Pulmonary Edema",),
    "Consolidation": ("Consolidation",),
    "Pneumonia": ("Pneumonia",),
    "Atelectasis": ("Pulmonary Atelectasis",),
    "Pneumothorax": ("Pneumothorax", "Hydropneumothorax", "Hemopneumothorax"),
    "Pleural Effusion": ("Pleural Effusion",),
    "Fracture": ("Fractures, Bone",),
    "Support Devices": ("Catheters, Indwelling", "Tube, Inserted", "Implanted Medical Device", "Medical Device"),
}
"""CheXpert label -> the ``Problems`` terms that make it positive (exact, case-sensitive match)."""
_EXPECTED = f"the Open-i / Indiana University chest X-ray files ({REPORTS}; optionally {PROJECTIONS} and images/)"


def parse_problems(cell: object) -> list[str]:
    """``"Cardiomegaly;Pulmonary Artery"`` -> ``["Cardiomegaly", "Pulmonary Artery"]`` (empty cell -> [])."""
    if not isinstance(cell, str):
        return []
    return [term.strip() for term in cell.split(";") if term.strip()]


def problem_labels(terms: list[str]) -> dict[str, float]:
    """``{label: 1.0 | 0.0 | NaN}`` for :data:`PROBLEM_LABELS` (NaN for all when not indexed)."""
    if not terms or NO_INDEXING in terms:
        return {label: float("nan") for label in PROBLEM_LABELS}
    present = set(terms)
    labels = {label: float(any(t in present for t in names)) for label, names in PROBLEM_LABELS.items()}
    labels["No Finding"] = float(present == {NORMAL})
    return labels


def _image_dir(root: Path) -> Path | None:
    return next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), None)


def frontal_images(root: Path) -> tuple[dict[str, str], Path | None]:
    """``{uid: filename of the first frontal image}`` and the image folder; empty when either is absent."""
    image_dir = _image_dir(root)
    if not (root / PROJECTIONS).is_file() or image_dir is None:
        return {}, None
    table = read_table(root / PROJECTIONS, f"Open-i projections ({PROJECTIONS})", PROJECTION_COLUMNS,
                       dtype={"uid": str, "filename": str, "projection": str})
    frontal = table[table["projection"].astype(str).str.strip().str.lower() == "frontal"]
    first = frontal.drop_duplicates(subset="uid", keep="first")
    uids = first["uid"].astype(str).str.strip().tolist()
    names = first["filename"].astype(str).str.strip().tolist()
    return dict(zip(uids, names, strict=True)), image_dir


@SOURCES.register("openi")
def prepare_openi(options: PrepareOptions) -> SourceResult:
    """Read the Open-i / Indiana University collection as distributed on Kaggle (see the module docstring)."""
    root = options.require_root("openi", _EXPECTED)
    reports = read_indiana_reports(root / REPORTS)
    frontal, image_dir = frontal_images(root)
    uids = [str(u).strip() for u in reports["uid"].tolist()]
    splits = hash_split(uids)
    rows: list[dict[str, object]] = []
    rejected: list[Problem] = []
    seen: set[str] = set()
    for record, uid, split in zip(reports.to_dict("records"), uids, splits, strict=True):
        row, problem = _row(record, uid, split, frontal, image_dir, root)
        if problem is None and uid in seen:
            row, problem = {}, Problem(f"openi-{uid}", "row", REPORTS, f"duplicate uid {uid} (first row kept)")
        seen.add(uid)
        if problem is not None:
            rejected.append(problem)
        else:
            rows.append(row)
    info = ManifestInfo(
        source="openi",
        roots={"cxr": str(root)} if image_dir is not None else {},
        split_protocol=hash_split_protocol("uid") + "; no patient id is distributed: each report is a subject",
        label_sets={"problems": list(PROBLEM_LABELS)},
        label_policy={"mesh_problems": "labels from the manually coded MeSH 'Problems' terms via a fixed "
                      "term -> CheXpert-name map (PROBLEM_LABELS); listed 1, not listed 0, 'No Indexing' NaN; "
                      "'No Finding' only for 'normal'"},
        extra={"report": "findings + impression, XXXX de-identification markers removed",
               "label_terms": {k: list(v) for k, v in PROBLEM_LABELS.items()},
               "images": image_dir.relative_to(root).as_posix() if image_dir is not None else None},
    )
    return SourceResult(Manifest(pd.DataFrame(rows), info), rejected)


def _row(record: Mapping[Any, Any], uid: str, split: str, frontal: Mapping[str, str], image_dir: Path | None,
         root: Path) -> tuple[dict[str, object], Problem | None]:
    study_id = f"openi-{uid}"
    if bool(record["empty"]):
        return {}, Problem(study_id, "report", REPORTS, "empty report")
    cxr_path: str | None = None
    if image_dir is not None and uid in frontal:
        cxr_path = (image_dir / frontal[uid]).relative_to(root).as_posix()
        if not (root / cxr_path).is_file():
            return {}, Problem(study_id, "cxr", cxr_path, "image file not found")
    terms = parse_problems(record.get("Problems"))
    row: dict[str, object] = {
        "study_id": study_id,
        "subject_id": uid,
        "split": split,
        "cxr_path": cxr_path,
        "cxr_view": "FRONTAL" if cxr_path is not None else None,
        "report": str(record["text"]),
        "meta/problems": ";".join(terms) or None,
        "meta/mesh": record.get("MeSH") if isinstance(record.get("MeSH"), str) else None,
        "meta/indication": record.get("indication") if isinstance(record.get("indication"), str) else None,
    }
    row |= {f"{LABEL_PREFIX}{label}": value for label, value in problem_labels(terms).items()}
    return row, None
