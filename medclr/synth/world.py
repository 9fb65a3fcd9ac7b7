"""``medclr synth``: generate the synthetic clinical world into the real datasets' layouts.

>>> summary = generate_world("world", preset="tiny", seed=0)      # doctest: +SKIP
>>> # then, unchanged from real data:  medclr prepare mimic-paired --root world --out paired.parquet

Patients are split into three cohorts that mirror where the real data comes from:

- ``mimic`` (60 %): X-ray studies (DICOM) with radiology reports, and ECGs (WFDB) with machine reports
  around the same time -> ``mimic-cxr/``, ``mimic-iv-ecg/``, their pairing, and ``ms-cxr/`` boxes;
- ``chexpert`` (20 %): X-rays only, as 8-bit JPEGs -> ``chexpert/`` (train labels from the report, as a
  report labeler would give them, uncertain included; valid labels from the truth, as radiologists would);
- ``ptbxl`` (20 %): ECGs only -> ``ptbxl/`` (500 Hz and 100 Hz copies, SCP codes, ten stratified folds).

``truth.csv`` at the top holds every study's latent state and labels (the ground truth the manifests'
labels can be checked against, and the source of the joint labels; see :mod:`medclr.synth.latent`), the X-ray
finding boxes (``boxes``) and where each ECG's localised findings are (``ecg_findings``: leads and beat
segments, see :func:`medclr.synth.ecg.ecg_findings`), the ground truth of phrase grounding.
Generation is parallel over processes and deterministic for a seed: each patient draws from its own
generator seeded by ``(seed, patient index)``, so the order and the number of workers do not matter.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from medclr.errors import MedclrInputError
from medclr.synth import layouts
from medclr.synth.latent import (
    Cohort,
    Patient,
    Study,
    add_incidental,
    sample_patient,
    sample_study,
    sample_xor_study,
)

COHORT_SHARES: dict[Cohort, float] = {"mimic": 0.6, "chexpert": 0.2, "ptbxl": 0.2}


@dataclass(frozen=True)
class Preset:
    """A world's size and style."""

    name: str
    patients: int
    cxr_sizes: tuple[int, int]  # min, max long side in pixels
    xor: bool = False
    incidental: bool = False  # sternotomy wires, lung volumes, ... (medclr.synth.latent.add_incidental)
    description: str = ""


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", 40, (320, 384), description="a few dozen patients for tests (seconds)"),
    "demo": Preset("demo", 2000, (512, 640), description="the CPU demo: a few thousand studies (minutes)"),
    "xor": Preset("xor", 1500, (384, 448), xor=True,
                  description="Symile's XOR test: the report's fact is X-ray bit XOR ECG bit"),
}


@dataclass(frozen=True)
class WorldSummary:
    out: Path
    preset: str
    seed: int
    n_patients: int
    n_cxr: int
    n_ecg: int
    seconds: float

    def line(self) -> str:
        rate = (self.n_cxr + self.n_ecg) / max(self.seconds, 1e-9)
        return (f"wrote the {self.preset} world (seed {self.seed}) to {self.out}: {self.n_patients} patients, "
                f"{self.n_cxr} X-rays, {self.n_ecg} ECGs in {self.seconds:.0f} s ({rate:.1f} studies/s)")


def cohort_of(index: int, n_patients: int) -> Cohort:
    """Deterministic cohort by index: the first 60 % mimic, then chexpert, then ptbxl."""
    position = index / max(n_patients, 1)
    return "mimic" if position < 0.6 else "chexpert" if position < 0.8 else "ptbxl"


def plan_patient(seed: int, index: int, n_patients: int, preset: Preset) -> list[Study]:
    """A patient's studies (pure, cheap): every random choice of the world except the rendering noise."""
    rng = np.random.default_rng([seed, index, 0])
    patient = sample_patient(rng, index, cohort_of(index, n_patients))
    hours, studies = 0.0, []
    for number in range(patient.n_studies):
        sampler = sample_xor_study if preset.xor else sample_study
        studies.append(sampler(rng, patient, number, hours, preset.cxr_sizes))
        hours += float(rng.uniform(24 * 20, 24 * 400))
    if not preset.incidental:
        return studies
    return add_incidental(np.random.default_rng([seed, index, 0, 1]), studies)  # own stream: the rest is unchanged


def _ids(patient: Patient, number: int) -> dict[str, Any]:
    subject = 10_000_000 + patient.index
    return {"subject_id": subject, "cxr_study_id": 50_000_000 + patient.index * 10 + number,
            "ecg_study_id": 40_000_000 + patient.index * 10 + number}


def _first_of_cohort(cohort: Cohort, n_patients: int) -> int:
    return next(i for i in range(n_patients) if cohort_of(i, n_patients) == cohort)


def _dicom_id(rng: np.random.Generator) -> str:
    """MIMIC-CXR style dicom_id: five dash-separated groups of 8 hex digits."""
    return "-".join(f"{int(x):08x}" for x in rng.integers(0, 2**32, size=5, dtype=np.uint64))


def _epoch(patient: Patient) -> datetime:
    """MIMIC shifts dates into 2100-2200; each synthetic patient starts on a day in that range."""
    return datetime(2150, 1, 1, 8, 0) + timedelta(days=int(patient.index * 37 % 18250), minutes=patient.index % 600)


def generate_world(
    out: str | os.PathLike[str], *, preset: str = "demo", patients: int | None = None, seed: int = 0,
    workers: int = 0, progress: bool = True, incidental: bool = False,
) -> WorldSummary:
    """Generate a world into ``out`` (see the module docstring); returns what was written. ``incidental``: add
    incidental findings (sternotomy wires, lung volumes, ...; data_cards/synth.md) to a clinical preset."""
    import time

    if preset not in PRESETS:
        raise MedclrInputError(None, f"unknown preset {preset!r}", f"choose one of {', '.join(PRESETS)}")
    spec = replace(PRESETS[preset], incidental=incidental)
    if spec.xor and incidental:
        raise MedclrInputError(None, "--incidental does not apply to the xor preset",
                               "leave it out: the xor world varies its two bits alone")
    n = spec.patients if patients is None else patients
    if n < 10:
        raise MedclrInputError(None, f"--patients {n} is too few", "use at least 10 (each cohort needs patients)")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tables: dict[str, list[dict[str, Any]]] = defaultdict(list)
    chunks = [list(range(i, min(i + 16, n))) for i in range(0, n, 16)]
    n_workers = workers or os.cpu_count() or 1
    bar = tqdm(total=n, desc=f"synth {preset}", unit="patient", disable=not progress)
    with bar:
        for n_done, rows in _run(chunks, root, seed, n, spec, n_workers):
            for table, row in rows:
                tables[table].append(row)
            bar.update(n_done)
    tables["ptbxl/scp_statements.csv"] = [
        {str(k): v for k, v in row.items()} for row in layouts.scp_statements().to_dict("records")
    ]
    layouts.write_tables(root, tables)
    about = {"preset": preset, "seed": seed, "patients": n, **({"incidental": True} if incidental else {})}
    (root / "world.json").write_text(json.dumps(about, indent=1))
    n_cxr = sum(1 for r in tables["truth.csv"] if r["cxr_path"])
    n_ecg = sum(1 for r in tables["truth.csv"] if r["ecg_path"])
    return WorldSummary(root, preset, seed, n, n_cxr, n_ecg, time.perf_counter() - start)


def _run(chunks: list[list[int]], root: Path, seed: int, n: int, spec: Preset, workers: int
         ) -> Iterator[tuple[int, list[tuple[str, dict[str, Any]]]]]:
    if workers == 1 or len(chunks) == 1:
        for chunk in chunks:
            yield _render_patients(chunk, root, seed, n, spec)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_render_patients, chunk, root, seed, n, spec) for chunk in chunks]
        for future in futures:
            yield future.result()


def _render_patients(indices: list[int], root: Path, seed: int, n: int, spec: Preset
                     ) -> tuple[int, list[tuple[str, dict[str, Any]]]]:
    """Render the studies of ``indices`` (in a worker process); returns (patients done, table rows)."""
    from medclr.synth.render import render_study

    rows: list[tuple[str, dict[str, Any]]] = []
    for index in indices:
        for study in plan_patient(seed, index, n, spec):
            rng = np.random.default_rng([seed, index, 1 + study.number])
            ids = _ids(study.patient, study.number)
            ids["dicom_id"] = _dicom_id(rng)
            ids["chexpert_rank"] = index - _first_of_cohort("chexpert", n)
            when = _epoch(study.patient) + timedelta(hours=study.hours)
            rows.extend(render_study(root, study, ids, when, rng, spec))
    return len(indices), rows
