"""NIH ChestX-ray14 (Wang et al., 2017): 112,120 frontal chest X-rays (PNG, 1024 x 1024) of 30,805 patients.

Layout read as distributed (NIH Clinical Center box folder, or its Kaggle mirror ``nih-chest-xrays/data``)::

    ROOT/Data_Entry_2017_v2020.csv   one row per image (older copies: Data_Entry_2017.csv; any
                                     ``Data_Entry_2017*.csv`` at the root is read, e.g. an excerpt)
        Image Index, Finding Labels, Follow-up #, Patient ID, Patient Age, Patient Gender, View Position,
        OriginalImage[Width,Height], OriginalImagePixelSpacing[x,y]
    ROOT/train_val_list.txt, ROOT/test_list.txt     the official split: one image name per line
    ROOT/images/00000001_000.png ...                (NIH: images_001.tar.gz ... images_012.tar.gz unpack here)
    ROOT/images_001/images/00000001_000.png ...     (Kaggle: images_001 ... images_012, each with images/)

The header's bracketed names contain unquoted commas, so a CSV reader splits them into the columns
``OriginalImage[Width``, ``Height]``, ``OriginalImagePixelSpacing[x``, ``y]`` (the 2017 file also ends every
line with a comma: one empty trailing column). Those are read by these split names when present.

- **Rows**: one per image; ``study_id`` is the ``Image Index`` (ChestX-ray14 has no study grouping beyond the
  ``Follow-up #`` of the patient), ``subject_id`` the ``Patient ID``. Every folder named ``images`` or
  ``images_*`` (with or without an inner ``images/``) is indexed; a CSV row whose image is in none of them is
  rejected with ``image file not found`` (an excerpt with the full CSV reports them, never drops them), and a
  repeated ``Image Index`` keeps its first row (later ones are rejected).
- **Split**: with ``train_val_list.txt`` and ``test_list.txt`` (the official, patient-disjoint split): the
  test list is ``test``; the train/val list has no official validation part, so its patients are divided by
  :func:`medclr.data.splits.hash_split` 7/8 ``train``, 1/8 ``val`` (about 70/10/20 overall, the proportions of
  Wang et al.'s first benchmark). Without the lists: :func:`~medclr.data.splits.hash_split` of the Patient ID
  (80/10/10).
- **Labels** (set ``findings``): the 14 findings (Atelectasis, Cardiomegaly, Effusion, Infiltration, Mass,
  Nodule, Pneumonia, Pneumothorax, Consolidation, Edema, Emphysema, Fibrosis, Pleural_Thickening, Hernia) and
  ``No Finding``, from ``Finding Labels`` (``|``-separated). They were text-mined from the (unreleased) reports
  with NLP (DNorm/MetaMap and negation rules), expected >90% accurate by the authors and much noisier in later
  audits (Oakden-Rayner, 2020): a listed finding is 1, every other 0 (policy ``nlp_mined``); there are no
  uncertain or unknown labels. No report text is distributed.
- **Meta**: ``meta/age`` (years), ``meta/sex`` (M/F), ``meta/follow_up``, the original size and pixel spacing.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from medclr.data.manifest import LABEL_PREFIX, Manifest, ManifestInfo
from medclr.data.prepare import SOURCES, PrepareOptions, SourceResult
from medclr.data.splits import hash_split, hash_split_protocol
from medclr.data.validate import Problem
from medclr.errors import MedclrInputError
from medclr.io.tables import read_table

DATA_ENTRY_GLOB = "Data_Entry_2017*.csv"
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
COLUMNS = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
           "View Position")
FINDINGS = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
    "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)
NO_FINDING = "No Finding"
LABELS = (*FINDINGS, NO_FINDING)
IMAGE_SUFFIXES = (".png",)
TRAIN_VAL_FRACTIONS = (0.875, 0.125, 0.0)  # 1/8 of the train_val patients -> val: about 70/10/20 overall
_SIZE_COLUMNS = {"OriginalImage[Width": "meta/original_width", "Height]": "meta/original_height",
                 "OriginalImagePixelSpacing[x": "meta/pixel_spacing_x_mm", "y]": "meta/pixel_spacing_y_mm"}
_AGE = re.compile(r"^\s*(\d+)\s*([YMD]?)\s*$", re.IGNORECASE)  # 58 (v2020) or 058Y / 006M (some old copies)
_EXPECTED = "the NIH ChestX-ray14 release (Data_Entry_2017_v2020.csv and images/ or images_001/images/ ...)"


def find_data_entry(root: Path) -> Path:
    """The ``Data_Entry_2017*.csv`` at ``root`` (the v2020 file first, then the 2017 file, then others)."""
    found = sorted(root.glob(DATA_ENTRY_GLOB))
    if not found:
        raise MedclrInputError(root, f"no {DATA_ENTRY_GLOB} found", f"pass the folder that holds {_EXPECTED}")
    preferred = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
    return next((p for name in preferred for p in found if p.name == name), found[0])


def index_images(root: Path, *, progress: bool = False) -> tuple[dict[str, str], int]:
    """``{image name: POSIX path relative to root}`` over ``images/`` and ``images_*/`` (recursively).

    Returns the index and the number of duplicate names (the first in sorted folder order is kept).
    """
    folders = sorted(p for p in root.iterdir() if p.is_dir() and (p.name == "images" or p.name.startswith("images_")))
    index: dict[str, str] = {}
    duplicates = 0
    for folder in tqdm(folders, desc="indexing NIH image folders", unit="folder", disable=not progress, leave=False):
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for name in sorted(filenames):
                if not name.lower().endswith(IMAGE_SUFFIXES):
                    continue
                if name in index:
                    duplicates += 1
                    continue
                index[name] = Path(dirpath, name).relative_to(root).as_posix()
    return index, duplicates


def _read_list(path: Path) -> set[str]:
    try:
        return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
    except (OSError, UnicodeDecodeError) as err:
        raise MedclrInputError(path, f"cannot read the split list ({err})", "fetch it again from the release") from err


def official_lists(root: Path) -> tuple[set[str], set[str]] | None:
    """``(train_val names, test names)`` when both official lists are present; ``None`` when neither is."""
    train_val, test = root / TRAIN_VAL_LIST, root / TEST_LIST
    if not train_val.is_file() and not test.is_file():
        return None
    if not (train_val.is_file() and test.is_file()):
        missing = TEST_LIST if train_val.is_file() else TRAIN_VAL_LIST
        raise MedclrInputError(root / missing, "official split list not found (only one of the two is present)",
                               f"restore {missing} from the release, or remove both lists to use a patient hash split")
    return _read_list(train_val), _read_list(test)


def _splits(subjects: list[str], lists: tuple[set[str], set[str]] | None,
            names: list[str]) -> tuple[list[str | None], str]:
    """The split of each row and the protocol text (``None`` = image in neither official list)."""
    if lists is None:
        return list(hash_split(subjects)), hash_split_protocol("Patient ID")
    train_val, test = lists
    val_of = hash_split(subjects, fractions=TRAIN_VAL_FRACTIONS)
    out: list[str | None] = []
    for name, split in zip(names, val_of, strict=True):
        out.append("test" if name in test else split if name in train_val else None)
    train, val, _ = TRAIN_VAL_FRACTIONS
    protocol = (f"official patient-disjoint split: {TEST_LIST} -> test; {TRAIN_VAL_LIST} divided by patient "
                f"(medclr.data.splits.hash_split of Patient ID, salt 'medclr', train {train:g} / val {val:g})")
    return out, protocol


@SOURCES.register("nih-cxr14")
def prepare_nih_cxr14(options: PrepareOptions) -> SourceResult:
    """Read NIH ChestX-ray14 as distributed (see the module docstring)."""
    root = options.require_root("nih-cxr14", _EXPECTED)
    csv_path = find_data_entry(root)
    table = read_table(csv_path, f"NIH ChestX-ray14 data entry ({csv_path.name})", COLUMNS, dtype={"Patient ID": str})
    index, duplicates = index_images(root, progress=options.progress)
    lists = official_lists(root)
    names = table["Image Index"].astype(str).str.strip().tolist()
    subjects = [_subject(v) for v in table["Patient ID"].tolist()]
    splits, protocol = _splits(subjects, lists, names)
    rows: list[dict[str, object]] = []
    rejected: list[Problem] = []
    records = table.to_dict("records")
    seen: set[str] = set()
    for record, name, subject, split in zip(records, names, subjects, splits, strict=True):
        row, problem = _row(record, name, subject, split, index)
        if problem is None and name in seen:
            row, problem = {}, Problem(name, "row", csv_path.name, "duplicate Image Index (first row kept)")
        seen.add(name)
        if problem is not None:
            rejected.append(problem)
        else:
            rows.append(row)
    info = ManifestInfo(
        source="nih-cxr14",
        roots={"cxr": str(root)},
        split_protocol=protocol,
        label_sets={"findings": list(LABELS)},
        label_policy={"nlp_mined": "Finding Labels were text-mined from the reports (Wang et al., 2017; noisy, "
                      "see data_cards/nih-cxr14.md): a listed finding is 1, every other 0; no unknown labels"},
        extra={"data_entry_csv": csv_path.name, "n_images_indexed": len(index), "n_duplicate_image_names": duplicates,
               "n_image_file_not_found": sum(p.reason == "image file not found" for p in rejected)},
    )
    return SourceResult(Manifest(pd.DataFrame(rows), info), rejected)


def _subject(value: object) -> str:
    text = str(value).strip()
    return str(int(text)) if text.isdigit() else text


def parse_findings(cell: object) -> set[str]:
    """``"Cardiomegaly|Effusion"`` -> ``{"Cardiomegaly", "Effusion"}``; unknown names are an input error."""
    if not isinstance(cell, str) or not cell.strip():
        raise MedclrInputError(None, "empty Finding Labels cell")
    found = {part.strip() for part in cell.split("|") if part.strip()}
    unknown = sorted(found - set(LABELS))
    if unknown:
        raise MedclrInputError(None, f"unknown finding label(s) {unknown}; expected {', '.join(LABELS)}")
    if NO_FINDING in found and len(found) > 1:
        raise MedclrInputError(None, f"'{NO_FINDING}' listed together with findings {sorted(found - {NO_FINDING})}")
    return found


def parse_age(value: object) -> float:
    """Age in years from ``58`` or ``058Y`` / ``006M`` / ``020D``; NaN when absent or implausible (> 120 y)."""
    match = _AGE.match(str(value)) if value is not None else None
    if match is None:
        return math.nan
    number, unit = float(match.group(1)), match.group(2).upper()
    years = number / 12.0 if unit == "M" else number / 365.25 if unit == "D" else number
    return years if years <= 120 else math.nan


def _row(record: Mapping[Any, Any], name: str, subject: str, split: str | None,
         index: Mapping[str, str]) -> tuple[dict[str, object], Problem | None]:
    try:
        findings = parse_findings(record["Finding Labels"])
    except MedclrInputError as err:
        return {}, Problem(name, "row", name, err.problem)
    if not subject or subject == "nan":
        return {}, Problem(name, "row", name, "empty Patient ID")
    if split is None:
        return {}, Problem(name, "row", name, f"image is in neither {TRAIN_VAL_LIST} nor {TEST_LIST}")
    path = index.get(name)
    if path is None:
        return {}, Problem(name, "cxr", name, "image file not found")
    view = record.get("View Position")
    sex = record.get("Patient Gender")
    row: dict[str, object] = {
        "study_id": name,
        "subject_id": subject,
        "split": split,
        "cxr_path": path,
        "cxr_view": str(view).strip().upper() if isinstance(view, str) and view.strip() else None,
        "meta/age": parse_age(record.get("Patient Age")),
        "meta/sex": str(sex).strip().upper() if isinstance(sex, str) and sex.strip() in ("M", "F") else None,
        "meta/follow_up": _number(record.get("Follow-up #")),
    }
    row |= {meta: _number(record.get(col)) for col, meta in _SIZE_COLUMNS.items()}
    row |= {f"{LABEL_PREFIX}{label}": float(label in findings) for label in LABELS}
    return row, None


def _number(value: object) -> float:
    """A numeric cell as float; NaN when absent or not a number."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan
