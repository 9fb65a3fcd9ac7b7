"""MIMIC-CXR (Johnson et al., 2019; PhysioNet v2.0.0/v2.1.0): 377,110 chest radiographs of 227,835 studies.

Two releases share one tree and are both read as distributed: MIMIC-CXR-JPG (JPEG images plus the tables) and
MIMIC-CXR (the DICOM images plus the free-text reports)::

    mimic-cxr-jpg/2.1.0/                             MIMIC-CXR-JPG
        mimic-cxr-2.0.0-metadata.csv.gz              dicom_id, subject_id, study_id, ViewPosition, StudyDate,
                                                     StudyTime, Rows, Columns, PerformedProcedureStepDescription,
                                                     ViewCodeSequence_CodeMeaning, ... (one row per image)
        mimic-cxr-2.0.0-split.csv.gz                 dicom_id, study_id, subject_id, split (train/validate/test)
        mimic-cxr-2.0.0-chexpert.csv.gz              subject_id, study_id, 14 CheXpert labels (1/0/-1/blank)
        files/p10/p10000032/s50414267/02aa804e-....jpg
    mimic-cxr/2.0.0/                                 MIMIC-CXR (DICOM)
        files/p10/p10000032/s50414267/02aa804e-....dcm
        files/p10/p10000032/s50414267.txt            the study's report (also shipped as mimic-cxr-reports.zip)

``--root`` is either one dataset folder (tables and images together, as the JPG release, or the DICOM release
with the three tables copied beside ``files/``) or a folder holding both releases: the tables are looked for up
to three folders down. The image tree is the ``files/`` beside the tables (else ``--cxr-root``, else the first
``files/`` found); whether it holds JPEGs or DICOMs is read from its first image. Reports are read from
``files/pXX/pSUBJECT/sSTUDY.txt`` in any ``files/`` tree found (the DICOM release, an extracted
``mimic-cxr-reports/``), else straight from ``mimic-cxr-reports.zip``.

- **One row per study** (``study_id`` = the 8-digit MIMIC study id, ``subject_id`` the patient): the kept
  image is a frontal view by ``ViewPosition`` (``ViewCodeSequence_CodeMeaning`` where that is blank), PA
  preferred over AP, ties by ``dicom_id``; ``meta/dicom_id`` and ``meta/n_images`` record the choice. A study
  without a PA or AP image is quarantined ("no frontal image").
- **Split**: the official ``mimic-cxr-2.0.0-split.csv`` (patient-disjoint): train, validate -> ``val``, test.
- **Labels**: ``mimic-cxr-2.0.0-chexpert.csv``, the CheXpert labeler run on the reports (Irvin et al., 2019;
  Johnson et al., MIMIC-CXR-JPG, 2019): 1 positive, 0 negative, blank (not mentioned) -> NaN, uncertain -1 per
  ``--uncertain`` (U-Ignore/U-Zeros/U-Ones). A study the labeler did not label keeps NaN labels.
- **Report**: FINDINGS then IMPRESSION (:func:`medclr.io.reports.parse_sections` and
  :func:`~medclr.io.reports.report_text`, with its fallbacks). A study with no report file, or whose report
  has no usable text, keeps its image with a null report (counted in ``info.extra``); a report file that
  exists but cannot be read is quarantined.
- **Time**: ``study_time`` from ``StudyDate`` + ``StudyTime`` (``HHMMSS.fff``; dates are shifted per patient
  by the de-identification, intervals within a patient are real).
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from medclr.data.manifest import Manifest, ManifestInfo
from medclr.data.prepare import SOURCES, PrepareOptions, SourceResult, require_dir
from medclr.data.sources.chexpert import CHEXPERT_LABELS, label_columns, uncertain_policy_text, uncertain_value
from medclr.data.validate import Problem
from medclr.errors import MedclrInputError
from medclr.io.reports import parse_sections, report_text
from medclr.io.tables import read_table

METADATA = "mimic-cxr-2.0.0-metadata.csv"
SPLIT = "mimic-cxr-2.0.0-split.csv"
CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv"
REPORTS_ZIP = "mimic-cxr-reports.zip"
METADATA_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate", "StudyTime")
SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
CHEXPERT_COLUMNS = ("subject_id", "study_id", *CHEXPERT_LABELS)
SPLITS = {"train": "train", "validate": "val", "test": "test"}
VIEW_RANK = {"PA": 0, "AP": 1}
VIEW_MEANINGS = {"postero-anterior": "PA", "antero-posterior": "AP"}
_NOT_FRONTAL = 9
_IDS = {"dicom_id": str, "subject_id": str, "study_id": str}
_SEARCH_DEPTH = 3
_SEARCH_MAX_DIRS = 5000
_REPORT_MEMBER = re.compile(r"(?:^|/)files/p\d+/p(?P<subject>\d+)/s(?P<study>\d+)\.txt$")
_EXPECTED = "MIMIC-CXR-JPG (mimic-cxr-2.0.0-{metadata,split,chexpert}.csv.gz, files/) and/or MIMIC-CXR (files/)"
_META_EXTRAS = {
    "PerformedProcedureStepDescription": "meta/procedure",
    "PatientOrientationCodeSequence_CodeMeaning": "meta/orientation",
    "Rows": "meta/rows",
    "Columns": "meta/columns",
}


@dataclass(frozen=True)
class MimicLayout:
    """Where the pieces of a MIMIC-CXR download are."""

    tables: dict[str, Path]  # METADATA / SPLIT / CHEXPERT -> the file (.csv or .csv.gz)
    images: Path  # the folder holding files/pXX/...
    image_format: Literal["jpg", "dcm"]
    report_dirs: tuple[Path, ...] = ()  # folders holding files/pXX/pSUBJECT/sSTUDY.txt
    report_zip: Path | None = None


def search_dirs(root: Path, depth: int = _SEARCH_DEPTH) -> list[Path]:
    """``root`` and its folders up to ``depth`` levels down, breadth first, never inside a ``files/`` tree."""
    found, level = [root], [root]
    for _ in range(depth):
        below: list[Path] = []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            below += [Path(e.path) for e in entries if e.is_dir() and e.name != "files" and not e.name.startswith(".")]
        found += below
        level = below
        if len(found) > _SEARCH_MAX_DIRS:
            break
    return found


def find_table(dirs: list[Path], name: str) -> Path | None:
    """The first ``name.gz`` or ``name`` in ``dirs`` (in order)."""
    for folder in dirs:
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    return None


def first_image(files: Path) -> Path | None:
    """The first ``.jpg``/``.dcm`` under ``files/pXX/pSUBJECT/sSTUDY/`` (the tree's format, without a full walk)."""

    def subdirs(folder: Path, prefix: str) -> Iterator[Path]:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        yield from (Path(e.path) for e in entries if e.is_dir() and e.name.startswith(prefix))

    for group in subdirs(files, "p"):
        for subject in subdirs(group, "p"):
            for study in subdirs(subject, "s"):
                images = sorted(p for p in study.iterdir() if p.suffix.lower() in (".jpg", ".dcm"))
                if images:
                    return images[0]
    return None


def find_layout(root: Path, cxr_root: Path | None = None) -> MimicLayout:
    """Locate the tables, the image tree (and its format) and the reports under ``root``."""
    dirs = search_dirs(root)
    tables: dict[str, Path] = {}
    for name in (METADATA, SPLIT, CHEXPERT):
        found = find_table(dirs, name)
        if found is None:
            raise MedclrInputError(
                root, f"{name}(.gz) not found here or up to {_SEARCH_DEPTH} folders down",
                "download the tables of MIMIC-CXR-JPG (v2.0.0 or v2.1.0) into the dataset folder",
            )
        tables[name] = found
    trees = [d for d in dirs if (d / "files").is_dir()]
    if cxr_root is not None:
        images = require_dir(cxr_root, "the MIMIC-CXR(-JPG) image tree files/pXX/pSUBJECT/sSTUDY/")
    else:
        beside = tables[METADATA].parent
        images = beside if beside in trees else next(iter(trees), root)
    first = first_image(images / "files")
    if first is None:
        raise MedclrInputError(images / "files", "no .jpg or .dcm image under files/pXX/pSUBJECT/sSTUDY/",
                               f"pass the folder that holds {_EXPECTED}")
    report_dirs = tuple(dict.fromkeys([images, *trees]))
    report_zip = next((d / REPORTS_ZIP for d in dirs if (d / REPORTS_ZIP).is_file()), None)
    fmt: Literal["jpg", "dcm"] = "jpg" if first.suffix.lower() == ".jpg" else "dcm"
    return MimicLayout(tables, images, fmt, report_dirs, report_zip)


@dataclass
class ReportStore:
    """Finds and reads a study's report: ``files/pXX/pSUBJECT/sSTUDY.txt`` in a folder, else in the zip."""

    dirs: tuple[Path, ...]
    zip_path: Path | None = None
    _zip: zipfile.ZipFile | None = field(default=None, init=False, repr=False)
    _members: dict[tuple[str, str], str] = field(default_factory=dict, init=False, repr=False)

    def locate(self, subject: str, study: str) -> str | None:
        """Where the report is (a path, or ``ZIP!member``), or None when there is none."""
        relative = f"files/p{subject[:2]}/p{subject}/s{study}.txt"
        for folder in self.dirs:
            if (folder / relative).is_file():
                return str(folder / relative)
        if self.zip_path is not None:
            member = self._index().get((subject, study))
            return None if member is None else f"{self.zip_path}!{member}"
        return None

    def read(self, where: str) -> str:
        """The report text at ``where`` (from :meth:`locate`); unreadable or non-UTF-8 files raise."""
        try:
            if self.zip_path is not None and where.startswith(f"{self.zip_path}!"):
                data = self._open().read(where[len(str(self.zip_path)) + 1 :])
            else:
                data = Path(where).read_bytes()
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise MedclrInputError(where, f"report is not UTF-8 text ({err.reason} at byte {err.start})") from err
        except (OSError, zipfile.BadZipFile, KeyError) as err:
            raise MedclrInputError(where, f"cannot read the report ({type(err).__name__}: {err})") from err

    def _open(self) -> zipfile.ZipFile:
        if self._zip is None:
            if self.zip_path is None:
                raise MedclrInputError(None, "no reports zip was found", f"put {REPORTS_ZIP} in the dataset folder")
            self._zip = zipfile.ZipFile(self.zip_path)
        return self._zip

    def _index(self) -> dict[tuple[str, str], str]:
        if not self._members:
            try:
                names = self._open().namelist()
            except (OSError, zipfile.BadZipFile) as err:
                raise MedclrInputError(self.zip_path, f"cannot open the reports zip ({err})",
                                       "download mimic-cxr-reports.zip again or extract it") from err
            for name in names:
                m = _REPORT_MEMBER.search(name)
                if m:
                    self._members[(m["subject"], m["study"])] = name
        return self._members

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None


@SOURCES.register("mimic-cxr")
def prepare_mimic_cxr(options: PrepareOptions) -> SourceResult:
    """Read MIMIC-CXR(-JPG) as distributed (see the module docstring)."""
    root = options.require_root("mimic-cxr", _EXPECTED)
    uncertain = uncertain_value(options.uncertain)
    layout = find_layout(root, options.cxr_root)
    images, problems = read_images(layout.tables[METADATA])
    studies = choose_images(images)
    reasons = pd.Series("", index=studies.index, dtype=object)
    _no_frontal(studies, reasons)
    studies = _with_split(studies, layout.tables[SPLIT], reasons)
    studies, n_unlabelled = _with_labels(studies, layout.tables[CHEXPERT], uncertain, reasons)
    studies["study_time"] = study_times(studies["meta/study_date"], studies["meta/study_time"])
    reasons[studies["study_time"].isna() & reasons.eq("")] = "StudyDate/StudyTime is not a valid date and time"
    studies["cxr_path"] = image_paths(studies, layout.image_format)
    for study, path, reason in zip(studies["study_id"], studies["cxr_path"], reasons, strict=True):
        if reason:
            modality = "cxr" if reason.startswith("no frontal") else "row"
            problems.append(Problem(study, modality, path, reason))
    studies = studies[reasons.eq("")].reset_index(drop=True)
    store = ReportStore(layout.report_dirs, layout.report_zip)
    try:
        studies, report_problems, counts = attach_reports(studies, store, options.progress)
    finally:
        store.close()
    problems += report_problems
    frame = studies.drop(columns=["rank", "meta/study_date", "meta/study_time"])
    info = _info(layout, options.uncertain, counts, n_unlabelled)
    return SourceResult(Manifest(frame, info), problems)


def read_images(metadata: Path) -> tuple[pd.DataFrame, list[Problem]]:
    """The metadata table, one row per image with its view (and rank: PA 0, AP 1, other 9); bad ids rejected."""
    table = read_table(metadata, f"MIMIC-CXR-JPG metadata ({METADATA})", METADATA_COLUMNS, dtype=_IDS)
    for col in ("dicom_id", "subject_id", "study_id"):
        table[col] = table[col].fillna("").str.strip()
    bad = ~(table["subject_id"].str.fullmatch(r"\d+") & table["study_id"].str.fullmatch(r"\d+")) | table[
        "dicom_id"].eq("")
    problems = [Problem(d or "<blank dicom_id>", "row", str(metadata),
                        f"{METADATA}: subject_id {s!r} / study_id {t!r} / dicom_id are not valid MIMIC ids")
                for d, s, t in zip(table.loc[bad, "dicom_id"], table.loc[bad, "subject_id"],
                                   table.loc[bad, "study_id"], strict=True)]
    table = table[~bad].drop_duplicates("dicom_id")
    view = table["ViewPosition"].fillna("").astype(str).str.strip().str.upper()
    if "ViewCodeSequence_CodeMeaning" in table.columns:
        meaning = table["ViewCodeSequence_CodeMeaning"].fillna("").astype(str).str.strip().str.lower()
        view = view.where(view.ne(""), meaning.map(VIEW_MEANINGS).fillna(""))
    out = pd.DataFrame({
        "study_id": table["study_id"], "subject_id": table["subject_id"], "cxr_view": view.where(view.ne(""), None),
        "rank": view.map(VIEW_RANK).fillna(_NOT_FRONTAL).astype(np.int64), "meta/dicom_id": table["dicom_id"],
        "meta/study_date": table["StudyDate"], "meta/study_time": table["StudyTime"],
    })
    for column, name in _META_EXTRAS.items():
        if column in table.columns:
            out[name] = table[column]
    return out.reset_index(drop=True), problems


def choose_images(images: pd.DataFrame) -> pd.DataFrame:
    """One image per study: the lowest view rank (PA, then AP), ties by dicom_id; adds ``meta/n_images``."""
    ordered = images.sort_values(["study_id", "rank", "meta/dicom_id"], kind="stable")
    n_images = ordered.groupby("study_id", sort=False)["meta/dicom_id"].transform("size")
    return ordered.assign(**{"meta/n_images": n_images}).drop_duplicates("study_id").reset_index(drop=True)


def _no_frontal(studies: pd.DataFrame, reasons: pd.Series) -> None:
    lacking = studies["rank"].eq(_NOT_FRONTAL)
    views = studies.loc[lacking, "cxr_view"].fillna("blank")
    reasons[lacking] = [f"no frontal image (PA/AP) in the study; kept image's view: {v}" for v in views]


def _with_split(studies: pd.DataFrame, path: Path, reasons: pd.Series) -> pd.DataFrame:
    table = read_table(path, f"MIMIC-CXR-JPG split ({SPLIT})", SPLIT_COLUMNS, dtype=_IDS)
    split = table.drop_duplicates("dicom_id").set_index("dicom_id")["split"]
    raw = studies["meta/dicom_id"].map(split)
    studies["split"] = raw.map(lambda s: SPLITS.get(str(s).strip()) if isinstance(s, str) else None)
    todo = reasons.eq("")
    reasons[todo & raw.isna()] = f"dicom_id not in {SPLIT}"
    unknown = reasons.eq("") & raw.notna() & studies["split"].isna()
    reasons[unknown] = [f"split {s!r} in {SPLIT}; expected train, validate or test" for s in raw[unknown]]
    return studies


def _with_labels(
    studies: pd.DataFrame, path: Path, uncertain: float, reasons: pd.Series
) -> tuple[pd.DataFrame, int]:
    table = read_table(path, f"MIMIC-CXR-JPG CheXpert labels ({CHEXPERT})", CHEXPERT_COLUMNS, dtype=_IDS)
    table["study_id"] = table["study_id"].fillna("").str.strip()
    table = table.drop_duplicates("study_id").reset_index(drop=True)
    labels, cell_problems = label_columns(table, CHEXPERT_LABELS, uncertain)
    labels.index = table["study_id"]
    cell_problems.index = table["study_id"]
    merged = labels.reindex(studies["study_id"]).reset_index(drop=True)
    problem = cell_problems.reindex(studies["study_id"]).fillna("").to_numpy()
    todo = reasons.eq("") & (problem != "")
    reasons[todo] = [f"{CHEXPERT}: {p}" for p in problem[todo.to_numpy()]]
    n_unlabelled = int((~studies["study_id"].isin(table["study_id"])).sum())
    return pd.concat([studies, merged], axis=1), n_unlabelled


def study_times(dates: pd.Series, times: pd.Series) -> pd.Series:
    """``StudyDate`` (YYYYMMDD) + ``StudyTime`` (HHMMSS.fff, leading zeros lost as a number) -> datetime; NaT if bad."""
    day = pd.to_numeric(dates, errors="coerce")
    clock = pd.to_numeric(times, errors="coerce")
    text = [
        f"{int(d):08d} {t:013.6f}" if np.isfinite(d) and np.isfinite(t) and d == int(d) and 0 <= t < 240000 else ""
        for d, t in zip(day.to_numpy(dtype=np.float64), clock.to_numpy(dtype=np.float64), strict=True)
    ]
    return pd.to_datetime(pd.Series(text, index=dates.index), format="%Y%m%d %H%M%S.%f", errors="coerce")


def image_paths(studies: pd.DataFrame, fmt: str) -> list[str]:
    """``files/p10/p10000032/s50414267/<dicom_id>.<fmt>`` for each row."""
    return [f"files/p{s[:2]}/p{s}/s{t}/{d}.{fmt}" for s, t, d in
            zip(studies["subject_id"], studies["study_id"], studies["meta/dicom_id"], strict=True)]


def attach_reports(
    studies: pd.DataFrame, store: ReportStore, progress: bool = True
) -> tuple[pd.DataFrame, list[Problem], dict[str, int]]:
    """Add ``report`` (findings + impression); unreadable report files reject their study."""
    texts: list[str | None] = []
    problems: list[Problem] = []
    keep = np.ones(len(studies), dtype=bool)
    counts = {"studies_without_report": 0, "reports_without_text": 0}
    rows = zip(studies["subject_id"], studies["study_id"], strict=True)
    for i, (subject, study) in enumerate(tqdm(rows, total=len(studies), desc="reading MIMIC-CXR reports",
                                              unit="report", disable=not progress, leave=False)):
        where = store.locate(subject, study)
        text: str | None = None
        if where is None:
            counts["studies_without_report"] += 1
        else:
            try:
                raw = store.read(where)
            except MedclrInputError as err:
                problems.append(Problem(study, "report", where, err.problem))
                keep[i] = False
            else:
                text = _training_text(raw, where)
                counts["reports_without_text"] += text is None
        texts.append(text)
    out = studies.assign(report=pd.Series(texts, index=studies.index, dtype=object))
    return out[keep].reset_index(drop=True), problems, counts


def _training_text(raw: str, where: str) -> str | None:
    try:
        return report_text(parse_sections(raw, source=where), source=where)
    except MedclrInputError:
        return None  # no findings, impression or other body text: the image stays, the report is missing


def _info(layout: MimicLayout, policy: str, counts: dict[str, int], n_unlabelled: int) -> ManifestInfo:
    return ManifestInfo(
        source="mimic-cxr",
        roots={"cxr": str(layout.images)},
        split_protocol=f"official {SPLIT}: train -> train, validate -> val, test -> test (patient-disjoint)",
        label_sets={"chexpert": list(CHEXPERT_LABELS)},
        label_policy={
            "uncertain": uncertain_policy_text(policy),
            "blank": "not mentioned (blank) -> NaN (unknown)",
            "labeler": f"CheXpert labeler on the reports ({CHEXPERT}; Irvin et al., 2019)",
        },
        extra={
            "layout": "MIMIC-CXR-JPG (.jpg)" if layout.image_format == "jpg" else "MIMIC-CXR (.dcm)",
            "tables": {name: str(path) for name, path in layout.tables.items()},
            "image_choice": "one frontal image per study by ViewPosition (ViewCodeSequence_CodeMeaning when "
            "blank): PA, then AP, ties by dicom_id; studies without PA/AP quarantined",
            "report": "FINDINGS + IMPRESSION (medclr.io.reports.report_text fallbacks); null when missing or empty",
            "report_sources": [str(d) for d in layout.report_dirs]
            + ([str(layout.report_zip)] if layout.report_zip else []),
            "studies_without_labels": n_unlabelled,
            **counts,
        },
    )
