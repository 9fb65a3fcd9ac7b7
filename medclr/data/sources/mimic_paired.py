"""MIMIC-CXR(-JPG) x MIMIC-IV-ECG: a chest X-ray study and a 12-lead ECG of the same patient, close in time.

MIMIC-CXR (Johnson et al., 2019) and MIMIC-IV-ECG (Gow et al., 2023) are both linked to MIMIC-IV: the same
``subject_id`` names the same patient, and both shift a patient's dates by the same offset, so the time between
an X-ray and an ECG is real. The two datasets are read by their own adapters (``mimic-cxr`` and
``mimic-iv-ecg``, through :data:`~medclr.data.prepare.SOURCES`), and their manifests are joined here::

    ROOT/mimic-cxr/       a MIMIC-CXR(-JPG) download, as ``medclr prepare mimic-cxr --root`` reads it
    ROOT/mimic-iv-ecg/    a MIMIC-IV-ECG v1.0 download, as ``medclr prepare mimic-iv-ecg --root`` reads it

(or ``--cxr-root`` and ``--ecg-root`` for the two folders wherever they are).

- **Pairing** (:func:`pair_nearest`): candidate pairs are a CXR study (time from the metadata's ``StudyDate`` +
  ``StudyTime``) and an ECG (``ecg_time``) of the same ``subject_id`` at most ``--window-hours`` apart. They are
  taken greedily by smallest absolute gap, each CXR study and each ECG used at most once, so every X-ray gets
  the nearest ECG still free. Ties go to the earlier ECG, then to the earlier X-ray. Studies without a partner
  are not errors: they are simply not paired (counts in ``info.extra``). ECG cart clocks were not synchronised
  with the hospital's (PhysioNet usage notes), so gaps of minutes are approximate.
- **Row**: ``study_id`` = ``"{cxr study}-{ecg study}"``; ``cxr_path``, ``cxr_view``, ``ecg_path``, ``ecg_fs``;
  ``report`` = the radiology report; ``study_time`` = the X-ray's time; labels of both sources (CheXpert labels
  of the X-ray, machine-statement labels of the ECG); ``meta/ecg_report`` (machine statements),
  ``meta/gap_hours`` (ECG time minus X-ray time, signed), ``meta/cxr_study_id``, ``meta/ecg_study_id``,
  ``meta/ecg_time``, ``meta/cxr_official_split``; the X-ray's ``meta/`` columns as they are and the ECG's with an
  ``ecg_`` prefix (``meta/ecg_rr_interval``...).
- **Split**: one patient-level hash split for both modalities (:mod:`medclr.data.splits` on ``subject_id``), so a
  patient never crosses splits. MIMIC-CXR's official split is not used (it is kept in
  ``meta/cxr_official_split``); the ECG split of ``mimic-iv-ecg`` is the same hash, so paired and ECG-only
  manifests agree.
- Records either adapter rejected are passed on to the quarantine list. Files of paired rows are checked by
  ``medclr prepare`` as for any source; a pair whose X-ray or ECG fails is quarantined as a whole (its partners
  are not re-paired).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from medclr.data.manifest import LABEL_PREFIX, META_PREFIX, Manifest, ManifestInfo
from medclr.data.prepare import SOURCES, PrepareOptions, SourceResult, require_dir
from medclr.data.splits import hash_split, hash_split_protocol
from medclr.errors import MedclrInputError

CXR_DIR = "mimic-cxr"
ECG_DIR = "mimic-iv-ecg"
_NS_PER_HOUR = 3_600 * 10**9
_FIX_ROOTS = f"pass --root DIR holding {CXR_DIR}/ and {ECG_DIR}/, or --cxr-root and --ecg-root"


def paired_roots(options: PrepareOptions) -> tuple[Path, Path]:
    """The MIMIC-CXR and MIMIC-IV-ECG folders: ``--cxr-root`` / ``--ecg-root``, else under ``--root``."""
    cxr = options.cxr_root or (options.root / CXR_DIR if options.root is not None else None)
    ecg = options.ecg_root or (options.root / ECG_DIR if options.root is not None else None)
    if cxr is None or ecg is None:
        raise MedclrInputError(None, "`medclr prepare mimic-paired` needs both datasets", _FIX_ROOTS)
    return (
        require_dir(cxr, "a MIMIC-CXR(-JPG) download (mimic-cxr-2.0.0-*.csv.gz tables and files/)"),
        require_dir(ecg, "a MIMIC-IV-ECG v1.0 download (record_list.csv, machine_measurements.csv, files/)"),
    )


def _nanoseconds(times: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(int64 ns since the epoch [N], valid [N])`` of a datetime column (NaT -> invalid)."""
    values = pd.to_datetime(times, errors="coerce")
    valid = values.notna().to_numpy()
    ns = values.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return ns, valid


def _ecg_by_subject(subjects: pd.Series, ns: np.ndarray, ok: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{subject: (times ns sorted [K], their row numbers [K])}`` of the rows with a time."""
    names = subjects.astype(str).to_numpy()
    rows = np.flatnonzero(ok)
    order = rows[np.lexsort((rows, ns[rows], names[rows]))]  # by subject, then time, then row
    if not len(order):
        return {}
    starts = np.flatnonzero(names[order][1:] != names[order][:-1]) + 1
    return {str(names[chunk[0]]): (ns[chunk], chunk) for chunk in np.split(order, starts)}


def pair_nearest(
    cxr_subjects: pd.Series,
    cxr_times: pd.Series,
    ecg_subjects: pd.Series,
    ecg_times: pd.Series,
    window_hours: float,
    progress: bool = False,
) -> list[tuple[int, int]]:
    """``[(cxr row, ecg row)]``: same subject, ``|gap| <= window_hours``, greedy by smallest gap, each row once.

    Ties: equal gaps go to the earlier ECG, then the earlier X-ray, then the lower row numbers. Rows without a
    time are never paired. Worked example (hours): X-rays at 0 and 10, ECGs at 1, 9 and 30, window 24: the
    candidate gaps are (0, 1) = 1, (10, 9) = 1, (0, 9) = 9, (10, 1) = 9 and (10, 30) = 20 ((0, 30) = 30 is
    outside the window); taken by gap, ties to the earlier ECG: (0, 1), then (10, 9); (10, 1), (0, 9) and
    (10, 30) each find a side already used. ECG 30 stays unpaired.
    """
    window = round(window_hours * _NS_PER_HOUR)
    c_ns, c_ok = _nanoseconds(cxr_times)
    e_ns, e_ok = _nanoseconds(ecg_times)
    by_subject = _ecg_by_subject(ecg_subjects, e_ns, e_ok)
    candidates: list[tuple[int, int, int, int, int]] = []  # (|gap|, ecg ns, cxr ns, cxr row, ecg row)
    subjects = cxr_subjects.astype(str).tolist()
    for i in tqdm(range(len(subjects)), desc="pairing X-rays and ECGs", unit="cxr", disable=not progress, leave=False):
        if not c_ok[i] or subjects[i] not in by_subject:
            continue
        times, rows = by_subject[subjects[i]]
        t = int(c_ns[i])
        lo = int(np.searchsorted(times, t - window, side="left"))
        hi = int(np.searchsorted(times, t + window, side="right"))
        candidates += [(abs(int(times[k]) - t), int(times[k]), t, i, int(rows[k])) for k in range(lo, hi)]
    candidates.sort()
    used_cxr: set[int] = set()
    used_ecg: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for _, _, _, i, j in candidates:
        if i not in used_cxr and j not in used_ecg:
            used_cxr.add(i)
            used_ecg.add(j)
            pairs.append((i, j))
    return sorted(pairs)


@SOURCES.register("mimic-paired")
def prepare_mimic_paired(options: PrepareOptions) -> SourceResult:
    """Read MIMIC-CXR and MIMIC-IV-ECG with their adapters and pair them (see the module docstring)."""
    import medclr.data.sources  # noqa: F401 - registers mimic-cxr and mimic-iv-ecg

    if not math.isfinite(options.window_hours) or options.window_hours <= 0:
        raise MedclrInputError(None, f"--window-hours must be a positive number of hours, got {options.window_hours}")
    cxr_root, ecg_root = paired_roots(options)
    plain = replace(options, cxr_root=None, ecg_root=None)
    cxr_result = SOURCES.get("mimic-cxr")(replace(plain, root=cxr_root))
    ecg_result = SOURCES.get("mimic-iv-ecg")(replace(plain, root=ecg_root))
    cxr, ecg = cxr_result.manifest.frame, ecg_result.manifest.frame
    if cxr.empty or ecg.empty:
        pairs: list[tuple[int, int]] = []
    else:
        pairs = pair_nearest(
            cxr["subject_id"],
            cxr["study_time"],
            ecg["subject_id"],
            ecg["study_time"],
            options.window_hours,
            options.progress,
        )
    frame, renamed = paired_frame(cxr, ecg, pairs)
    counts = {
        "n_cxr_studies": len(cxr),
        "n_ecg_studies": len(ecg),
        "n_paired": len(pairs),
        "n_subjects_paired": int(frame["subject_id"].nunique()) if len(frame) else 0,
        "n_cxr_rejected": len(cxr_result.rejected),
        "n_ecg_rejected": len(ecg_result.rejected),
    }
    info = _info(cxr_result.manifest.info, ecg_result.manifest.info, options.window_hours, counts, renamed)
    return SourceResult(Manifest(frame, info), [*cxr_result.rejected, *ecg_result.rejected])


def paired_frame(
    cxr: pd.DataFrame, ecg: pd.DataFrame, pairs: list[tuple[int, int]]
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The manifest rows of ``pairs``; also ``{ecg label column: new name}`` for ECG labels renamed on a clash."""
    if not pairs:
        return pd.DataFrame(), {}
    c = cxr.iloc[[i for i, _ in pairs]].reset_index(drop=True)
    e = ecg.iloc[[j for _, j in pairs]].reset_index(drop=True)
    c_ns, _ = _nanoseconds(c["study_time"])
    e_ns, _ = _nanoseconds(e["study_time"])
    out = pd.DataFrame(
        {
            "study_id": c["study_id"].astype(str) + "-" + e["study_id"].astype(str),
            "subject_id": c["subject_id"].astype(str),
            "cxr_path": c["cxr_path"],
            "cxr_view": c.get("cxr_view"),
            "ecg_path": e["ecg_path"],
            "ecg_fs": e.get("ecg_fs"),
            "report": c.get("report"),
            "study_time": c["study_time"],
        }
    )
    out.insert(2, "split", hash_split(out["subject_id"]))
    renamed = {
        col: f"{LABEL_PREFIX}ecg:{col[len(LABEL_PREFIX) :]}"
        for col in e.columns
        if col.startswith(LABEL_PREFIX) and col in c.columns
    }
    labels = [
        c[[col for col in c.columns if col.startswith(LABEL_PREFIX)]],
        e[[col for col in e.columns if col.startswith(LABEL_PREFIX)]].rename(columns=renamed),
    ]
    meta = pd.DataFrame(
        {
            "meta/cxr_study_id": c["study_id"],
            "meta/ecg_study_id": e["study_id"],
            "meta/ecg_report": e.get("report"),
            "meta/gap_hours": (e_ns - c_ns) / _NS_PER_HOUR,
            "meta/ecg_time": e["study_time"],
            "meta/cxr_official_split": c["split"],
        }
    )
    cxr_meta = c[[col for col in c.columns if col.startswith(META_PREFIX)]]
    ecg_meta = e[[col for col in e.columns if col.startswith(META_PREFIX)]]
    ecg_meta = ecg_meta.rename(columns={col: f"{META_PREFIX}ecg_{col[len(META_PREFIX) :]}" for col in ecg_meta.columns})
    return pd.concat([out, *labels, meta, cxr_meta, ecg_meta], axis=1), renamed


def _info(
    cxr: ManifestInfo, ecg: ManifestInfo, window_hours: float, counts: dict[str, int], renamed: dict[str, str]
) -> ManifestInfo:
    ecg_names = {f"{LABEL_PREFIX}{n}": n for labels in ecg.label_sets.values() for n in labels}
    label_sets: dict[str, list[str]] = dict(cxr.label_sets)
    for name, labels in ecg.label_sets.items():
        key = name if name not in label_sets else f"ecg:{name}"
        label_sets[key] = [renamed.get(f"{LABEL_PREFIX}{n}", f"{LABEL_PREFIX}{n}")[len(LABEL_PREFIX) :] for n in labels]
    extra: dict[str, Any] = {
        "window_hours": window_hours,
        "pairing": "same subject_id, |ECG time - X-ray time| <= window_hours; greedy by smallest gap, each X-ray "
        "and each ECG at most once; ties -> earlier ECG, then earlier X-ray",
        "time_sources": {"cxr": "MIMIC-CXR-JPG metadata StudyDate + StudyTime", "ecg": "record_list.csv ecg_time"},
        **counts,
        "renamed_ecg_labels": {ecg_names.get(k, k): v for k, v in renamed.items()},
        "cxr_source": {"split_protocol": cxr.split_protocol, **cxr.extra},
        "ecg_source": {"split_protocol": ecg.split_protocol, **ecg.extra},
    }
    return ManifestInfo(
        source="mimic-paired",
        roots={"cxr": cxr.roots["cxr"], "ecg": ecg.roots["ecg"]},
        split_protocol=f"{hash_split_protocol('subject_id')}; one split for X-ray and ECG (the official MIMIC-CXR "
        "split is not used; it is kept in meta/cxr_official_split)",
        label_sets=label_sets,
        label_policy={
            **{f"cxr/{k}": v for k, v in cxr.label_policy.items()},
            **{f"ecg/{k}": v for k, v in ecg.label_policy.items()},
        },
        extra=extra,
    )
