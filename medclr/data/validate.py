"""Check every record a manifest points to, in parallel, and say exactly which ones fail and why.

``quick`` (the default of ``medclr prepare``) never decodes a full image or signal: WFDB headers parse and
their signal files are as long as the headers imply; DICOM headers are valid and their pixel data is as long
as they imply; JPEGs decode at 1/8 scale; PNGs decode. ``full`` reads every file with
:func:`medclr.io.read_cxr` / :func:`medclr.io.read_ecg` (the exact path training takes).

A failing row is never dropped silently: it becomes a :class:`Problem` that :func:`medclr.data.prepare.prepare`
writes to the quarantine list next to the manifest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from medclr.data.manifest import Manifest
from medclr.errors import MedclrInputError

CheckLevel = Literal["quick", "full"]
CHECK_LEVELS: tuple[CheckLevel, ...] = ("quick", "full")
_PARALLEL_MIN_ROWS = 512  # below this, starting worker processes costs more than it saves
_CHUNK = 256


@dataclass(frozen=True)
class Problem:
    """One quarantined record: which study, which modality (or ``row``), which file, and why."""

    study_id: str
    modality: str
    path: str
    reason: str


@dataclass(frozen=True)
class _Task:
    row: int
    study_id: str
    cxr: str | None
    ecg: str | None


def check_cxr(path: Path, level: CheckLevel) -> None:
    """Raise :class:`MedclrInputError` if the X-ray at ``path`` is not usable."""
    from medclr.io.cxr import probe_cxr, read_cxr

    if level == "full":
        read_cxr(path)
    else:
        probe_cxr(path)


def check_ecg(path: Path, level: CheckLevel) -> None:
    """Raise :class:`MedclrInputError` if the ECG record at ``path`` is not usable."""
    from medclr.io.ecg import probe_ecg, read_ecg

    if level == "full":
        read_ecg(path)
    else:
        probe_ecg(path)


def _check_task(task: _Task, level: CheckLevel) -> list[Problem]:
    problems = []
    for modality, path, check in (("cxr", task.cxr, check_cxr), ("ecg", task.ecg, check_ecg)):
        if path is None:
            continue
        try:
            check(Path(path), level)
        except MedclrInputError as err:
            problems.append(Problem(task.study_id, modality, path, err.problem))
        except Exception as err:  # noqa: BLE001 - one bad record must never stop a run of 300,000
            problems.append(Problem(task.study_id, modality, path, f"unexpected {type(err).__name__}: {err}"))
    return problems


def _check_chunk(tasks: Sequence[_Task], level: CheckLevel) -> list[tuple[int, list[Problem]]]:
    return [(t.row, _check_task(t, level)) for t in tasks]


def _tasks(manifest: Manifest) -> list[_Task]:
    frame = manifest.frame

    def resolved(modality: Literal["cxr", "ecg"]) -> list[str | None]:
        column = f"{modality}_path"
        if column not in frame.columns:
            return [None] * len(frame)
        return [None if pd.isna(v) else str(manifest.resolve(modality, str(v))) for v in frame[column].tolist()]

    cxr, ecg = resolved("cxr"), resolved("ecg")
    ids = frame["study_id"].astype(str).tolist()
    return [_Task(i, ids[i], cxr[i], ecg[i]) for i in range(len(frame)) if cxr[i] is not None or ecg[i] is not None]


def _chunks(tasks: list[_Task]) -> Iterator[list[_Task]]:
    for start in range(0, len(tasks), _CHUNK):
        yield tasks[start : start + _CHUNK]


def validate_manifest(
    manifest: Manifest, *, level: CheckLevel = "quick", workers: int = 0, progress: bool = True
) -> tuple[np.ndarray, list[Problem]]:
    """Check the files of every row; return ``(ok [N] bool, problems)``.

    ``workers`` processes check chunks of rows in parallel (0 = one per CPU core; 1 = in this process).
    A row is ok when all its files pass; its problems list each failing file.
    """
    tasks = _tasks(manifest)
    ok = np.ones(len(manifest), dtype=bool)
    problems: list[Problem] = []
    n_workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(tasks), desc=f"checking {manifest.info.source} records ({level})", unit="rec",
               disable=not progress or not tasks, leave=False)
    with bar:
        if n_workers == 1 or len(tasks) < _PARALLEL_MIN_ROWS:
            results = (_check_chunk(chunk, level) for chunk in _chunks(tasks))
            _collect(results, ok, problems, bar)
        else:
            with ProcessPoolExecutor(max_workers=n_workers) as pool:
                futures = [pool.submit(_check_chunk, chunk, level) for chunk in _chunks(tasks)]
                _collect((f.result() for f in futures), ok, problems, bar)
    return ok, problems


def _collect(
    results: Iterator[list[tuple[int, list[Problem]]]], ok: np.ndarray, problems: list[Problem], bar: tqdm
) -> None:
    for chunk in results:
        for row, row_problems in chunk:
            if row_problems:
                ok[row] = False
                problems.extend(row_problems)
        bar.update(len(chunk))
