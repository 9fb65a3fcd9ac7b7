"""CheXpert (Irvin et al., 2019; Stanford AIMI, v1.0): 224,316 chest radiographs of 65,240 patients.

Layout read as distributed (the full ``CheXpert-v1.0`` and the downsampled ``CheXpert-v1.0-small`` alike)::

    CheXpert-v1.0-small/train.csv    one row per image: Path, Sex, Age, Frontal/Lateral, AP/PA, 14 labels
    CheXpert-v1.0-small/valid.csv    same columns; 234 images of 200 studies labelled by 3 radiologists
    CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg
    CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg
    CheXpert-v1.0-small/test_labels.csv   optional: the test set (500 studies, radiologist consensus, released
                                          with CheXlocalize, Saporta et al., 2022), images under test/

``Path`` is relative to the *parent* of the dataset folder (``CheXpert-v1.0-small/train/...``); a Path without
that first component (``test/patient64741/...``) is read as relative to the dataset folder itself. ``--root`` may
be the dataset folder or the folder holding it.

- **One row per study** (``patientNNNNN/studyK``): the labels come from the report and are the same for every
  image of a study, so the row takes its labels from the image it keeps. That image is a frontal view
  (``Frontal/Lateral``; from the file name ``view1_frontal.jpg`` where the column is missing), PA preferred over
  AP over other frontal projections (``AP/PA``), then the first by path. A study with only lateral images is
  quarantined ("no frontal image"): medclr's X-ray models and the zero-shot protocol use frontal views.
- **Split**: ``train.csv`` -> ``train``, ``valid.csv`` -> ``val``, ``test_labels.csv`` -> ``test`` (the
  official sets; patients never cross them). CheXzero-style zero-shot papers report on the test set and tune
  on the validation set.
- **Labels**: the 14 CheXpert observations. ``1.0`` positive, ``0.0`` negative, blank (not mentioned) -> NaN,
  ``-1.0`` (uncertain, training set only) per ``--uncertain``: ``nan`` (U-Ignore), ``zeros`` (U-Zeros) or
  ``ones`` (U-Ones), the policies of Irvin et al. (2019). Any other cell quarantines its study.
- **Report**: none (CheXpert ships no report text); ``report`` is null.

The label helpers here (:data:`CHEXPERT_LABELS`, :func:`uncertain_value`, :func:`label_columns`) are shared
with the MIMIC-CXR adapter, whose labels come from the same CheXpert labeler.
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from medclr.data.manifest import LABEL_PREFIX, Manifest, ManifestInfo
from medclr.data.prepare import SOURCES, PrepareOptions, SourceResult
from medclr.data.validate import Problem
from medclr.errors import MedclrInputError
from medclr.io.tables import read_table

CHEXPERT_LABELS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
    "Support Devices",
)
"""The 14 observations of the CheXpert labeler, in the column order of CheXpert and MIMIC-CXR-JPG."""

UNCERTAIN_POLICIES: dict[str, tuple[str, float]] = {
    "nan": ("U-Ignore", math.nan),
    "zeros": ("U-Zeros", 0.0),
    "ones": ("U-Ones", 1.0),
}
"""``--uncertain`` value -> (name in Irvin et al., 2019, the value an uncertain ``-1.0`` becomes)."""

TABLES = (("train.csv", "train"), ("valid.csv", "val"), ("test_labels.csv", "test"))
VIEW_RANK = {"PA": 0, "AP": 1}  # other frontal projections (LL, RL, blank) rank 2
_SEX = {"Male": "M", "Female": "F"}
_EXPECTED = "the CheXpert release (CheXpert-v1.0[-small]/ with train.csv, valid.csv, train/, valid/)"


def uncertain_value(policy: str) -> float:
    """The value an uncertain (-1) label takes under ``policy`` (``nan``, ``zeros`` or ``ones``)."""
    if policy not in UNCERTAIN_POLICIES:
        raise MedclrInputError(
            None, f"unknown uncertain-label policy {policy!r}", "pass nan (U-Ignore), zeros (U-Zeros) or ones (U-Ones)"
        )
    return UNCERTAIN_POLICIES[policy][1]


def uncertain_policy_text(policy: str) -> str:
    """What ``policy`` does, as written into ``info.label_policy`` (record, don't infer)."""
    name, value = UNCERTAIN_POLICIES[policy]
    target = "NaN (unknown)" if math.isnan(value) else f"{value:g}"
    return f"{name} (Irvin et al., 2019): uncertain -1.0 -> {target}"


def label_columns(frame: pd.DataFrame, names: tuple[str, ...], uncertain: float) -> tuple[pd.DataFrame, pd.Series]:
    """CheXpert-style label cells -> ``label/<name>`` float32 columns and a per-row problem (``""`` if none).

    ``1``/``0`` stay, ``-1`` becomes ``uncertain``, blank becomes NaN; anything else (text, ``2``) is a
    problem naming the column and the cell, and that row's labels must not be used.
    """
    out: dict[str, pd.Series] = {}
    reasons = pd.Series("", index=frame.index, dtype=object)
    for name in names:
        raw = frame[name]
        blank = raw.isna()
        if raw.dtype == object:
            blank |= raw.astype(str).str.strip().eq("")
        values = pd.to_numeric(raw.where(~blank), errors="coerce")
        bad = ~blank & ~values.isin([1.0, 0.0, -1.0])
        first = bad & reasons.eq("")
        if first.any():
            reasons[first] = raw[first].map(lambda v, n=name: f"label {n!r} is {v!r}; expected 1, 0, -1 or blank")
        out[f"{LABEL_PREFIX}{name}"] = values.where(values != -1.0, uncertain).astype("float32")
    return pd.DataFrame(out, index=frame.index), reasons


def find_dataset(root: Path) -> Path:
    """The CheXpert dataset folder: ``root`` if it holds ``train.csv``, else the one ``CheXpert-v1.0*`` in it."""
    if (root / "train.csv").is_file():
        return root
    found = sorted(p.parent for p in root.glob("CheXpert-v1.0*/train.csv"))
    if not found:
        raise MedclrInputError(root, "no CheXpert train.csv here or in a CheXpert-v1.0*/ folder",
                               f"pass the folder that holds {_EXPECTED}")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise MedclrInputError(root, f"several CheXpert releases here ({names})", "pass one of them as --root")
    return found[0]


def relative_image_path(path: str) -> str:
    """``CheXpert-v1.0-small/train/patient1/study1/view1_frontal.jpg`` -> ``train/patient1/study1/...``."""
    parts = PurePosixPath(path.strip().replace("\\", "/")).parts
    if parts and parts[0].startswith("CheXpert-v1.0"):
        parts = parts[1:]
    return "/".join(parts)


@SOURCES.register("chexpert")
def prepare_chexpert(options: PrepareOptions) -> SourceResult:
    """Read CheXpert as distributed (see the module docstring)."""
    dataset = find_dataset(options.require_root("chexpert", _EXPECTED))
    uncertain = uncertain_value(options.uncertain)
    frames: list[pd.DataFrame] = []
    rejected: list[Problem] = []
    read: list[str] = []
    for name, split in TABLES:
        if name == "test_labels.csv" and not (dataset / name).is_file():
            continue  # the test set is a separate release
        table = read_table(dataset / name, f"CheXpert {name}", ("Path", *CHEXPERT_LABELS))
        rows, problems = study_rows(table, split, uncertain, name)
        frames.append(rows)
        rejected += problems
        read.append(name)
    frame = pd.concat(frames, ignore_index=True)
    duplicated = frame["study_id"].duplicated()
    rejected += [Problem(s, "row", p, "study listed in more than one CheXpert table")
                 for s, p in zip(frame.loc[duplicated, "study_id"], frame.loc[duplicated, "cxr_path"], strict=True)]
    frame = frame[~duplicated].reset_index(drop=True)
    info = ManifestInfo(
        source="chexpert",
        roots={"cxr": str(dataset)},
        split_protocol="official sets: train.csv -> train, valid.csv -> val (200 studies, 3 radiologists), "
        "test_labels.csv -> test (500 studies, radiologist consensus) when present; patient-disjoint",
        label_sets={"chexpert": list(CHEXPERT_LABELS)},
        label_policy={
            "uncertain": uncertain_policy_text(options.uncertain),
            "blank": "not mentioned (blank) -> NaN (unknown)",
            "labeler": "train: CheXpert labeler on the reports (Irvin et al., 2019); valid/test: radiologists",
            "study": "labels of the kept frontal image (CheXpert labels are per study)",
        },
        extra={
            "release": dataset.name,
            "tables": read,
            "image_choice": "one frontal image per study: PA, then AP, then other frontal; ties by path; "
            "lateral-only studies quarantined",
            "report": "none (CheXpert has no report text)",
        },
    )
    return SourceResult(Manifest(frame, info), rejected)


def study_rows(table: pd.DataFrame, split: str, uncertain: float, name: str) -> tuple[pd.DataFrame, list[Problem]]:
    """One manifest row per study of one CheXpert table, and the problems of the studies it rejects."""
    images = _images(table)
    labels, reasons = label_columns(table, CHEXPERT_LABELS, uncertain)
    unparsed = images["study_id"].isna()
    problems = [Problem(str(p), "row", str(p), f"{name}: Path is not <split>/patientN/studyK/<view>.jpg")
                for p in images.loc[unparsed, "cxr_path"]]
    images = images[~unparsed].sort_values(["study_id", "frontal", "rank", "cxr_path"],
                                           ascending=[True, False, True, True], kind="stable")
    n_images = images.groupby("study_id", sort=False)["cxr_path"].transform("size")
    chosen = images.assign(**{"meta/n_images": n_images}).drop_duplicates("study_id")
    for study, path, frontal, reason in zip(chosen["study_id"], chosen["cxr_path"], chosen["frontal"],
                                            reasons[chosen.index], strict=True):
        if not frontal:
            problems.append(Problem(study, "cxr", path, f"{name}: no frontal image in the study"))
        elif reason:
            problems.append(Problem(study, "row", path, f"{name}: {reason}"))
    keep = chosen["frontal"] & reasons[chosen.index].eq("")
    chosen = chosen[keep]
    rows = chosen.drop(columns=["frontal", "rank"]).assign(split=split, report=None)
    return pd.concat([rows, labels.loc[chosen.index]], axis=1).reset_index(drop=True), problems


def _images(table: pd.DataFrame) -> pd.DataFrame:
    """Per image: study and subject ids, relative path, frontal flag, view and view rank, demographics."""
    paths = table["Path"].astype(str).map(relative_image_path)
    parts = paths.str.extract(r"(?:^|/)(?P<patient>patient\d+)/(?P<study>study\d+)/(?P<file>[^/]+)$")
    if "Frontal/Lateral" in table.columns:
        frontal = table["Frontal/Lateral"].astype(str).str.strip().str.lower().eq("frontal")
    else:
        frontal = parts["file"].fillna("").str.lower().str.contains("frontal")
    if "AP/PA" in table.columns:
        views = table["AP/PA"].map(lambda v: (v.strip() or None) if isinstance(v, str) else None).astype(object)
    else:
        views = pd.Series(None, index=table.index, dtype=object)
    return pd.DataFrame({
        "study_id": parts["patient"] + "_" + parts["study"],
        "subject_id": parts["patient"],
        "cxr_path": paths,
        "cxr_view": views,
        "frontal": frontal,
        "rank": views.map(lambda v: VIEW_RANK.get(v, 2) if v else 2).astype(np.int64),
        "meta/age": pd.to_numeric(table["Age"], errors="coerce") if "Age" in table.columns else np.nan,
        "meta/sex": table["Sex"].map(_SEX) if "Sex" in table.columns else None,
    }, index=table.index)
