"""The manifest: one parquet table per prepared dataset, one row per study, and what it means in its metadata.

Every dataset adapter (``medclr prepare SOURCE``) writes this one format, and everything downstream (cache,
training, evaluation, embedding) reads only it.

Columns (absent modality = null cell; paths are POSIX, relative to that modality's root):

============== ========= =====================================================================================
column         type      meaning
============== ========= =====================================================================================
study_id       str       unique within the manifest
subject_id     str       the patient (splits never separate a patient's studies)
split          str       ``train`` | ``val`` | ``test`` (the dataset's official split where it has one)
cxr_path       str?      X-ray file (DICOM/PNG/JPEG), relative to ``info.roots["cxr"]``
cxr_view       str?      view position (PA, AP, LATERAL, ...)
ecg_path       str?      ECG record (WFDB record path without extension, or a DICOM/CSV file), relative to
                         ``info.roots["ecg"]``
ecg_fs         float?    the ECG's sampling rate in Hz as its header states it
report         str?      the report's training text (cleaned; sections chosen by the adapter)
study_time     datetime? acquisition time where the dataset has one (pairing windows use it)
grounding      str?      JSON list of phrase annotations ``[{"phrase", "label", "boxes": [[x, y, w, h], ...],
                         "image_size": [W, H]}]`` in original X-ray pixels (MS-CXR convention)
label/<Name>   float32   1 positive, 0 negative, NaN unknown; soft labels in [0, 1] allowed
meta/<name>    any       dataset-specific extras kept for analysis (age, sex, device, ...)
============== ========= =====================================================================================

The parquet file's key-value metadata holds a :class:`ManifestInfo` under the key ``medclr``: the source, the
modality roots, the label sets (e.g. PTB-XL ``superclass``/``subclass``/``form``/``rhythm``), the label policy
(e.g. CheXpert's uncertain ``-1`` -> NaN, written by name: "record, don't infer") and the split protocol.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from medclr.atomic import atomic_path
from medclr.errors import MedclrInputError

SCHEMA_VERSION = 1
METADATA_KEY = b"medclr"
SPLITS = ("train", "val", "test")
LABEL_PREFIX = "label/"
META_PREFIX = "meta/"
Modality = Literal["cxr", "ecg", "report"]
MODALITY_COLUMNS: dict[str, str] = {"cxr": "cxr_path", "ecg": "ecg_path", "report": "report"}
REQUIRED_COLUMNS = ("study_id", "subject_id", "split")
TEXT_COLUMNS = ("study_id", "subject_id", "split", "cxr_path", "cxr_view", "ecg_path", "report", "grounding")
KNOWN_COLUMNS = (*TEXT_COLUMNS, "ecg_fs", "study_time")
_FIX_REPREPARE = "re-create it with `medclr prepare`"


@dataclass(frozen=True)
class ManifestInfo:
    """What a manifest means: stored as JSON in the parquet metadata (see the module docstring)."""

    source: str
    roots: dict[str, str]  # modality -> absolute directory the relative paths start from
    split_protocol: str  # e.g. "official strat_fold: train 1-8, val 9, test 10"
    label_sets: dict[str, list[str]] = field(default_factory=dict)  # set name -> label names (columns label/<n>)
    label_policy: dict[str, str] = field(default_factory=dict)  # policy name -> what it does
    n_quarantined: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # source-specific facts (time window, versions, ...)
    created: str = ""
    medclr_version: str = ""
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, source: str | PathLike[str]) -> ManifestInfo:
        try:
            data = json.loads(text)
            info = cls(**data)
        except (ValueError, TypeError) as err:
            raise MedclrInputError(source, f"corrupt medclr manifest metadata ({err})", _FIX_REPREPARE) from err
        if info.schema_version > SCHEMA_VERSION:
            raise MedclrInputError(
                source,
                f"manifest schema {info.schema_version} is newer than this medclr understands ({SCHEMA_VERSION})",
                "upgrade medclr",
            )
        return info


@dataclass
class Manifest:
    """A manifest table plus its :class:`ManifestInfo`; ``path`` is where it was read from, if anywhere."""

    frame: pd.DataFrame
    info: ManifestInfo
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def labels(self) -> list[str]:
        """Label names in column order (without the ``label/`` prefix)."""
        return [c[len(LABEL_PREFIX) :] for c in self.frame.columns if c.startswith(LABEL_PREFIX)]

    def label_matrix(self, names: list[str] | None = None) -> np.ndarray:
        """float32 ``[N, L]`` with NaN = unknown, for ``names`` (default: all labels)."""
        names = self.labels if names is None else names
        missing = [n for n in names if f"{LABEL_PREFIX}{n}" not in self.frame.columns]
        if missing:
            raise MedclrInputError(
                self.path, f"manifest has no label(s) {', '.join(missing)}", f"choose from: {', '.join(self.labels)}"
            )
        return self.frame[[f"{LABEL_PREFIX}{n}" for n in names]].to_numpy(dtype=np.float32)

    @property
    def modalities(self) -> list[str]:
        """Modalities present in at least one row, in the order cxr, ecg, report."""
        return [m for m, col in MODALITY_COLUMNS.items() if col in self.frame.columns and self.frame[col].notna().any()]

    def resolve(self, modality: Literal["cxr", "ecg"], relative: str) -> Path:
        """Absolute path of a ``cxr_path`` / ``ecg_path`` cell."""
        if modality not in self.info.roots:
            raise MedclrInputError(self.path, f"manifest records no root for {modality}", _FIX_REPREPARE)
        return Path(self.info.roots[modality]) / relative

    def split(self, name: str) -> Manifest:
        """The rows of one split (``train``, ``val`` or ``test``), re-indexed."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return Manifest(self.frame[self.frame["split"] == name].reset_index(drop=True), self.info, self.path)


def normalise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Put a source's rows into manifest dtypes: known columns first, then labels, then ``meta/`` columns."""
    out = frame.copy()
    for col in TEXT_COLUMNS:
        if col in out.columns:
            out[col] = out[col].astype("string")  # nullable: <NA> = absent
    if "ecg_fs" in out.columns:
        out["ecg_fs"] = pd.to_numeric(out["ecg_fs"], errors="coerce").astype("float64")
    if "study_time" in out.columns:
        out["study_time"] = pd.to_datetime(out["study_time"], errors="coerce")
    labels = sorted((c for c in out.columns if c.startswith(LABEL_PREFIX)), key=list(out.columns).index)
    for col in labels:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float32")
    known = [c for c in KNOWN_COLUMNS if c in out.columns]
    extras = [c for c in out.columns if c not in known and c not in labels]
    return out[known + labels + extras].reset_index(drop=True)


def check_frame(frame: pd.DataFrame, source: str | PathLike[str] | None) -> None:
    """Raise :class:`MedclrInputError` where ``frame`` breaks the manifest schema (names the first problem)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise MedclrInputError(source, f"manifest lacks column(s) {', '.join(missing)}", _FIX_REPREPARE)
    unknown = [
        c for c in frame.columns if c not in KNOWN_COLUMNS and not c.startswith((LABEL_PREFIX, META_PREFIX))
    ]
    if unknown:
        raise MedclrInputError(
            source, f"manifest has unknown column(s) {', '.join(unknown)}", "prefix extras with 'meta/'"
        )
    if frame["study_id"].isna().any() or frame["study_id"].duplicated().any():
        dup = frame.loc[frame["study_id"].duplicated(), "study_id"].head(3).tolist()
        raise MedclrInputError(source, f"study_id must be unique and present (repeated: {dup})", _FIX_REPREPARE)
    bad_split = sorted(set(frame["split"].dropna().unique()) - set(SPLITS)) + (
        ["<missing>"] if frame["split"].isna().any() else []
    )
    if bad_split:
        raise MedclrInputError(source, f"invalid split value(s) {bad_split}; expected {SPLITS}", _FIX_REPREPARE)
    for col in (c for c in frame.columns if c.startswith(LABEL_PREFIX)):
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
        outside = values[~np.isnan(values) & ((values < 0) | (values > 1))]
        if outside.size:
            raise MedclrInputError(
                source,
                f"label column {col!r} holds {outside[0]:g}; labels are floats in [0, 1] with NaN for unknown",
                "apply a named label policy in the adapter (e.g. CheXpert uncertain -1 -> NaN)",
            )
    if not frame.columns.intersection(list(MODALITY_COLUMNS.values())).size:
        raise MedclrInputError(source, "manifest has no modality column (cxr_path, ecg_path, report)", _FIX_REPREPARE)


def write_manifest(manifest: Manifest, path: str | PathLike[str]) -> Path:
    """Write atomically (temporary file in the same folder, then rename): a crash never leaves half a file."""
    from medclr import __version__

    out = Path(path)
    frame = normalise_frame(manifest.frame)
    check_frame(frame, out)
    info = ManifestInfo(
        **{
            **asdict(manifest.info),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "medclr_version": __version__,
        }
    )
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: info.to_json().encode()})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    manifest.frame, manifest.info, manifest.path = frame, info, out
    return out


def read_manifest(path: str | PathLike[str], *, roots: dict[str, str | PathLike[str]] | None = None) -> Manifest:
    """Read and check a manifest. ``roots`` overrides the stored modality roots (a dataset that moved)."""
    p = Path(path)
    if not p.is_file():
        raise MedclrInputError(p, "manifest not found", "create it with `medclr prepare SOURCE --root DIR --out FILE`")
    try:
        table = pq.read_table(p)
    except (pa.ArrowException, OSError) as err:
        raise MedclrInputError(p, f"not a readable parquet manifest ({err})", _FIX_REPREPARE) from err
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise MedclrInputError(p, "parquet file has no medclr manifest metadata", _FIX_REPREPARE)
    info = ManifestInfo.from_json(raw, p)
    if roots:
        info = ManifestInfo(**{**asdict(info), "roots": {**info.roots, **{k: str(v) for k, v in roots.items()}}})
    frame = table.to_pandas()
    check_frame(frame, p)
    return Manifest(normalise_frame(frame), info, p)
