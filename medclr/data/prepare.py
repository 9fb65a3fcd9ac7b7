"""``medclr prepare``: a dataset, exactly as distributed -> a checked manifest plus a quarantine list.

Each dataset has one adapter in :mod:`medclr.data.sources`, registered by name in :data:`SOURCES`. An adapter
reads the dataset's own CSVs and folder layout and returns a :class:`SourceResult`: the candidate rows (paths
relative to the modality roots) and the records it already had to reject (an unparseable label cell, a row
whose report is missing...). :func:`prepare` then checks every file the rows point to
(:mod:`medclr.data.validate`), moves failing rows to the quarantine list, and writes both files:

- ``OUT`` (parquet, see :mod:`medclr.data.manifest`), written atomically;
- ``OUT`` with suffix ``.quarantine.csv``: one line per problem (``study_id, modality, path, reason``),
  always written (header only when nothing was quarantined) so a stale list never survives a rerun.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from medclr.atomic import atomic_path
from medclr.data.manifest import SPLITS, Manifest, write_manifest
from medclr.data.validate import CheckLevel, Problem, validate_manifest
from medclr.errors import MedclrInputError, MedclrNotImplementedError
from medclr.registry import Registry


@dataclass(frozen=True)
class PrepareOptions:
    """What the user asked for; each adapter uses the fields that apply to it.

    ``root`` is the dataset folder as downloaded; ``cxr_root`` / ``ecg_root`` name the two datasets of a
    paired source separately. ``uncertain`` is the CheXpert-style policy for uncertain (-1) labels:
    ``nan`` (U-Ignore), ``zeros`` (U-Zeros) or ``ones`` (U-Ones) (Irvin et al., 2019).
    ``window_hours`` bounds the time between a paired X-ray and ECG. ``ecg_rate`` picks one of a dataset's
    sampling-rate copies (PTB-XL: 500 or 100 Hz). ``check`` and ``workers`` go to
    :func:`medclr.data.validate.validate_manifest`.
    """

    root: Path | None = None
    cxr_root: Path | None = None
    ecg_root: Path | None = None
    uncertain: str = "nan"
    window_hours: float = 24.0
    check: CheckLevel = "quick"
    workers: int = 0
    ecg_rate: int | None = None
    progress: bool = True

    def require_root(self, source: str, expected: str) -> Path:
        """``root`` as an existing directory, or a one-line error saying what the folder should hold."""
        if self.root is None:
            problem = f"`medclr prepare {source}` needs --root"
            raise MedclrInputError(None, problem, f"pass the folder that holds {expected}")
        return require_dir(self.root, expected)


def require_dir(path: Path, expected: str) -> Path:
    """``path`` resolved, if it is a directory; else a :class:`MedclrInputError` naming what it should hold."""
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise MedclrInputError(path, f"dataset root {what}", f"pass the folder that holds {expected}")
    return path.resolve()


@dataclass
class SourceResult:
    """An adapter's output: candidate rows (not yet file-checked) and the records it rejected itself."""

    manifest: Manifest
    rejected: list[Problem] = field(default_factory=list)


Source = Callable[[PrepareOptions], SourceResult]
SOURCES: Registry[Source] = Registry("dataset source")


@dataclass(frozen=True)
class PrepareReport:
    """What :func:`prepare` wrote."""

    manifest_path: Path
    quarantine_path: Path
    n_rows: int
    n_quarantined: int
    split_counts: dict[str, int]
    modalities: list[str]

    def summary(self) -> str:
        splits = ", ".join(f"{k} {v}" for k, v in self.split_counts.items())
        return (
            f"wrote {self.manifest_path}: {self.n_rows} studies ({splits}; modalities: {', '.join(self.modalities)}); "
            f"{self.n_quarantined} quarantined -> {self.quarantine_path}"
        )


def quarantine_path(manifest_path: Path) -> Path:
    """``m.parquet`` -> ``m.quarantine.csv`` (beside the manifest)."""
    return manifest_path.with_name(f"{manifest_path.stem}.quarantine.csv")


def prepare(source: str, options: PrepareOptions, out: str | os.PathLike[str]) -> PrepareReport:
    """Run the ``source`` adapter, check every record, write the manifest and the quarantine list."""
    import medclr.data.sources  # noqa: F401 - registers the adapters

    out_path = Path(out)
    if out_path.suffix != ".parquet":
        raise MedclrInputError(out_path, "the manifest is a parquet file", "name it e.g. manifest.parquet")
    if source not in SOURCES:
        raise MedclrNotImplementedError(f"`medclr prepare {source}` is not implemented yet")
    adapter = SOURCES.get(source)
    result = adapter(options)
    ok, problems = validate_manifest(
        result.manifest, level=options.check, workers=options.workers, progress=options.progress
    )
    frame = result.manifest.frame[ok].reset_index(drop=True)
    quarantined = [*result.rejected, *problems]
    n_bad_rows = len(result.rejected) + int((~ok).sum())
    if frame.empty:
        _write_quarantine(quarantine_path(out_path), quarantined)
        raise MedclrInputError(
            options.root or options.cxr_root,
            f"no usable {source} records ({n_bad_rows} quarantined, reasons in {quarantine_path(out_path)})",
            "check that --root is the dataset folder as downloaded",
        )
    info = replace(result.manifest.info, n_quarantined=n_bad_rows)
    manifest = Manifest(frame, info)
    write_manifest(manifest, out_path)
    q_path = _write_quarantine(quarantine_path(out_path), quarantined)
    counts = frame["split"].value_counts()
    return PrepareReport(
        manifest_path=out_path,
        quarantine_path=q_path,
        n_rows=len(frame),
        n_quarantined=n_bad_rows,
        split_counts={s: int(counts.get(s, 0)) for s in SPLITS},
        modalities=manifest.modalities,
    )


def _write_quarantine(path: Path, problems: Sequence[Problem]) -> Path:
    """Atomically write the quarantine CSV (header always present)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["study_id", "modality", "path", "reason"])
        writer.writeheader()
        writer.writerows(asdict(p) for p in problems)
    return path
