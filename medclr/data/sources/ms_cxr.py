"""MS-CXR (Boecking et al., 2022; PhysioNet v0.1 and v1.1.0): phrase grounding boxes on MIMIC-CXR images.

1,162 image-phrase pairs on frontal MIMIC-CXR images, eight findings (Atelectasis, Cardiomegaly,
Consolidation, Edema, Lung Opacity, Pleural Effusion, Pneumonia, Pneumothorax), each a report phrase with one or
more bounding boxes drawn or checked by board-certified radiologists. Layout read as distributed::

    ms-cxr/MS_CXR_Local_Alignment_v1.1.0.csv     one row per box: dicom_id, category_name, label_text, path,
                                                  x, y, w, h, image_width, image_height, split (train/val/test)
    ms-cxr/MS_CXR_Local_Alignment_v1.1.0.json    the same boxes in COCO format (not read: the CSV is complete)

PhysioNet v0.1 ships ``MS_CXR_Local_Alignment_v1.0.0.csv``: the same columns without ``split``. ``path`` is
relative to the MIMIC-CXR tree (``files/p10/p10000032/s50414267/<dicom_id>.dcm``); the images come from
``--cxr-root`` (default: ``ROOT/mimic-cxr``, ``ROOT`` itself, or ``../mimic-cxr`` beside ROOT, the first that has
``files/``). With a MIMIC-CXR-JPG tree the same path ending in ``.jpg`` is used (the JPEGs keep the DICOM
pixel grid, so the boxes apply unchanged).

- **One row per image** (``study_id`` = ``dicom_id``; ``subject_id`` and ``meta/mimic_study_id`` from the
  path). ``grounding`` holds the JSON list ``[{"phrase", "label", "boxes": [[x, y, w, h], ...],
  "image_size": [W, H]}]`` with the boxes of one phrase grouped, in original image pixels (top-left origin).
  ``report`` is null: the phrases are in ``grounding``.
- **Split**: the ``split`` column of v1.1.0 (train/val/test, the dataset's own split for fine-tuning
  grounding models; it is not MIMIC-CXR's split, which ``meta/mimic_split`` records where the MIMIC tables
  are found). v1.0.0 has none: every image is ``test``, as the whole set was an evaluation benchmark
  (Boecking et al., 2022).
- **Labels**: ``label/<category>`` = 1 for each finding with a phrase on the image, NaN for the others:
  MS-CXR annotates chosen phrases, it does not label every finding of an image, so an absent category is
  unknown, not negative.
- **Checks**: a box must have finite coordinates, positive width and height and lie inside
  ``image_width`` x ``image_height`` (1 pixel of tolerance). A bad box quarantines its phrase (every box of
  it: a phrase with a box missing would be graded against the wrong region); an image left with no phrase
  has no row. Rows of one image that disagree on path, size or split quarantine the image. Every problem is
  one line of the quarantine list.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from medclr.data.manifest import LABEL_PREFIX, Manifest, ManifestInfo
from medclr.data.prepare import SOURCES, PrepareOptions, SourceResult, require_dir
from medclr.data.sources.mimic_cxr import METADATA, SPLIT, SPLITS, find_table, search_dirs
from medclr.data.validate import Problem
from medclr.errors import MedclrInputError
from medclr.io.tables import read_table

CSV_GLOB = "MS_CXR_Local_Alignment_v*.csv"
COLUMNS = ("dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width", "image_height")
CATEGORIES = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Lung Opacity", "Pleural Effusion", "Pneumonia",
    "Pneumothorax",
)
MS_CXR_SPLITS = ("train", "val", "test")
BOX_TOLERANCE = 1.0  # pixels a box may reach past the image edge (rounding of drawn boxes)
_VERSION = re.compile(r"_v(\d+(?:\.\d+)*)\.csv$")
_MIMIC_PATH = re.compile(r"(?:^|/)files/p\d+/p(?P<subject>\d+)/s(?P<study>\d+)/[^/]+$")
_EXPECTED = "MS_CXR_Local_Alignment_v1.1.0.csv (or v1.0.0)"


def find_csv(root: Path) -> Path:
    """The newest ``MS_CXR_Local_Alignment_v*.csv`` in ``root``."""
    found = [(tuple(int(p) for p in m[1].split(".")), path) for path in root.glob(CSV_GLOB)
             if (m := _VERSION.search(path.name))]
    if not found:
        raise MedclrInputError(root, f"no {CSV_GLOB} here", f"pass the MS-CXR folder that holds {_EXPECTED}")
    return max(found)[1]


def find_cxr_root(root: Path, cxr_root: Path | None) -> Path:
    """The MIMIC-CXR(-JPG) folder holding ``files/``: ``--cxr-root``, else the first default that has one."""
    if cxr_root is not None:
        return require_dir(cxr_root, "the MIMIC-CXR(-JPG) tree files/pXX/pSUBJECT/sSTUDY/ the MS-CXR paths point to")
    for candidate in (root / "mimic-cxr", root, root.parent / "mimic-cxr", root / "mimic-cxr-jpg",
                      root.parent / "mimic-cxr-jpg"):
        if (candidate / "files").is_dir():
            return candidate.resolve()
    raise MedclrInputError(root, "no MIMIC-CXR image tree (files/) in ROOT/mimic-cxr, ROOT or beside ROOT",
                           "pass --cxr-root: the MIMIC-CXR-JPG or MIMIC-CXR folder that holds files/pXX/...")


def resolve_image(cxr_root: Path, path: str) -> str:
    """``path`` as found under ``cxr_root``, trying ``.jpg``/``.dcm`` for the other release; else as given."""
    relative = PurePosixPath(path.strip().replace("\\", "/").lstrip("/"))
    for candidate in (relative, relative.with_suffix(".jpg"), relative.with_suffix(".dcm")):
        if (cxr_root / candidate).is_file():
            return str(candidate)
    return str(relative)


def box_problem(box: list[float], width: float, height: float) -> str:
    """Why ``[x, y, w, h]`` is not a box inside a ``width`` x ``height`` image (``""`` if it is one)."""
    x, y, w, h = box
    if not all(math.isfinite(v) for v in box):
        return "box coordinates are not all numbers"
    if w <= 0 or h <= 0:
        return f"box has non-positive size (w={w:g}, h={h:g})"
    if x < -BOX_TOLERANCE or y < -BOX_TOLERANCE or x + w > width + BOX_TOLERANCE or y + h > height + BOX_TOLERANCE:
        return f"box [{x:g}, {y:g}, {w:g}, {h:g}] is outside the {width:g}x{height:g} image"
    return ""


@SOURCES.register("ms-cxr")
def prepare_ms_cxr(options: PrepareOptions) -> SourceResult:
    """Read MS-CXR as distributed (see the module docstring)."""
    root = options.require_root("ms-cxr", _EXPECTED)
    csv_path = find_csv(root)
    table = read_table(csv_path, f"MS-CXR boxes ({csv_path.name})", COLUMNS, dtype={"dicom_id": str, "path": str})
    cxr_root = find_cxr_root(root, options.cxr_root)
    has_split = "split" in table.columns
    records = _records(table)
    problems: list[Problem] = []
    by_image: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record["dicom_id"]:
            by_image.setdefault(record["dicom_id"], []).append(record)
        else:
            problems.append(Problem("<blank dicom_id>", "row", record["path"], f"{csv_path.name}: no dicom_id"))
    rows: list[dict[str, Any]] = []
    for dicom_id in sorted(by_image):
        row, row_problems = image_row(dicom_id, by_image[dicom_id], cxr_root, has_split)
        problems += [Problem(p.study_id, p.modality, p.path, f"{csv_path.name}: {p.reason}") for p in row_problems]
        if row is not None:
            rows.append(row)
    frame = _with_mimic_tables(pd.DataFrame(rows), cxr_root, root)
    categories = sorted({r["category_name"] for r in records if r["category_name"]},
                        key=lambda c: (c not in CATEGORIES, CATEGORIES.index(c) if c in CATEGORIES else 0, c))
    for category in categories:
        column = f"{LABEL_PREFIX}{category}"
        present = frame["meta/categories"].map(lambda cats, c=category: c in cats)
        frame[column] = present.map({True: 1.0, False: math.nan}).astype("float32")
    frame = frame.drop(columns=["meta/categories"])
    info = _info(csv_path, cxr_root, has_split, categories)
    return SourceResult(Manifest(frame, info), problems)


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The CSV rows as plain dicts: text stripped (blank -> ""), numbers as floats (NaN where not a number)."""
    out = pd.DataFrame({c: table[c].fillna("").astype(str).str.strip() for c in ("dicom_id", "path", "label_text",
                                                                                  "category_name")})
    for column in ("x", "y", "w", "h", "image_width", "image_height"):
        out[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    out["split"] = table["split"].fillna("").astype(str).str.strip() if "split" in table.columns else "test"
    return [{str(k): v for k, v in r.items()} for r in out.to_dict("records")]


def image_row(
    dicom_id: str, boxes: list[dict[str, Any]], cxr_root: Path, has_split: bool
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The manifest row of one image from its CSV rows (None if nothing usable is left) and its problems."""

    def reject(reason: str) -> tuple[None, list[Problem]]:
        return None, [Problem(dicom_id, "row", boxes[0]["path"], reason)]

    paths = sorted({b["path"] for b in boxes})
    m = _MIMIC_PATH.search(paths[0]) if len(paths) == 1 else None
    if m is None:
        return reject(f"path {paths} is not one MIMIC-CXR files/pXX/pSUBJECT/sSTUDY/<image> path")
    sizes = {(b["image_width"], b["image_height"]) for b in boxes}
    width, height = next(iter(sizes)) if len(sizes) == 1 else (math.nan, math.nan)
    if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
        return reject(f"image_width/image_height {sorted(sizes)} are not one positive size")
    splits = sorted({b["split"] for b in boxes})
    if has_split and (len(splits) != 1 or splits[0] not in MS_CXR_SPLITS):
        return reject(f"split {splits}; expected one of {', '.join(MS_CXR_SPLITS)} per image")
    grounding, problems = phrases(dicom_id, boxes, (width, height), paths[0])
    if not grounding:
        return None, problems
    row = {
        "study_id": dicom_id, "subject_id": m["subject"], "split": splits[0] if has_split else "test",
        "cxr_path": resolve_image(cxr_root, paths[0]), "report": None, "grounding": json.dumps(grounding),
        "meta/mimic_study_id": m["study"], "meta/n_phrases": len(grounding),
        "meta/n_boxes": sum(len(g["boxes"]) for g in grounding), "meta/categories": {g["label"] for g in grounding},
    }
    return row, problems


def phrases(
    dicom_id: str, boxes: list[dict[str, Any]], size: tuple[float, float], path: str
) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Group the boxes of each (phrase, category) in CSV order; a phrase with a bad box is quarantined whole."""
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    bad: dict[tuple[str, str], str] = {}
    problems: list[Problem] = []
    for record in boxes:
        key = phrase, label = record["label_text"], record["category_name"]
        box = [record[k] for k in ("x", "y", "w", "h")]
        reason = "blank label_text or category_name" if not phrase or not label else box_problem(box, *size)
        if reason:
            problems.append(Problem(dicom_id, "grounding", path, f"phrase {phrase!r}: {reason}"))
            bad[key] = reason
            continue
        entry = grouped.setdefault(key, {"phrase": phrase, "label": label, "boxes": [], "image_size": _ints(size)})
        entry["boxes"].append(_ints(box))
    for key, reason in bad.items():
        if key in grouped:
            n = len(grouped.pop(key)["boxes"])
            problems.append(Problem(dicom_id, "grounding", path,
                                    f"phrase {key[0]!r}: {n} good box(es) dropped with the bad one ({reason})"))
    return list(grouped.values()), problems


def _ints(values: Sequence[float]) -> list[float | int]:
    """Whole numbers as ints (``[8, 20, 24, 16]``), others unchanged: the JSON reads as the CSV did."""
    return [int(v) if float(v).is_integer() else v for v in values]


def _with_mimic_tables(frame: pd.DataFrame, cxr_root: Path, root: Path) -> pd.DataFrame:
    """``cxr_view`` and ``meta/mimic_split`` from the MIMIC-CXR-JPG tables, where they are found."""
    if frame.empty:
        return frame.assign(**{"meta/categories": pd.Series(dtype=object)})
    dirs = [*search_dirs(cxr_root, 1), *search_dirs(root, 1)]
    metadata, split = find_table(dirs, METADATA), find_table(dirs, SPLIT)
    if metadata is not None:
        views = read_table(metadata, METADATA, ("dicom_id", "ViewPosition"), usecols=["dicom_id", "ViewPosition"],
                           dtype={"dicom_id": str})
        frame["cxr_view"] = frame["study_id"].map(views.drop_duplicates("dicom_id").set_index("dicom_id")
                                                  ["ViewPosition"])
    if split is not None:
        splits = read_table(split, SPLIT, ("dicom_id", "split"), usecols=["dicom_id", "split"], dtype={"dicom_id": str})
        mapped = frame["study_id"].map(splits.drop_duplicates("dicom_id").set_index("dicom_id")["split"])
        frame["meta/mimic_split"] = mapped.map(lambda s: SPLITS.get(s) if isinstance(s, str) else None)
    return frame


def _info(csv_path: Path, cxr_root: Path, has_split: bool, categories: list[str]) -> ManifestInfo:
    split = ("the MS-CXR split column (train/val/test; not MIMIC-CXR's split: see meta/mimic_split)" if has_split
             else "no split column (MS-CXR v1.0.0): every image -> test (evaluation benchmark)")
    return ManifestInfo(
        source="ms-cxr",
        roots={"cxr": str(cxr_root)},
        split_protocol=split,
        label_sets={"ms-cxr": categories},
        label_policy={
            "categories": "1 where the image has a phrase of that finding, NaN otherwise (MS-CXR is not "
            "exhaustively labelled: an absent finding is unknown, not negative)",
        },
        extra={
            "csv": str(csv_path),
            "grounding": "JSON [{phrase, label, boxes [[x, y, w, h]], image_size [W, H]}] in original pixels",
            "box_check": f"finite, positive size, inside the image with {BOX_TOLERANCE:g} px tolerance; a bad box "
            "quarantines its whole phrase",
            "report": "null (phrases are in grounding)",
        },
    )
