"""The synthetic world of ``medclr synth``: its MIMIC part paired, plus the joint labels from its truth table.

``medclr prepare synth --root WORLD`` runs the real ``mimic-paired`` adapter on ``WORLD/mimic-cxr`` and
``WORLD/mimic-iv-ecg`` (exactly as on real MIMIC), then adds from ``WORLD/truth.csv``:

- the **joint labels** (``label_sets["joint"]``): facts stated in the report that need both modalities
  (``Heart Failure`` in the clinical presets, ``Discordant Cardiac Findings`` = X-ray bit XOR ECG bit in
  ``xor``; see :mod:`medclr.synth.latent`);
- the **true ECG superclasses** (``label_sets["ecg_truth"]``, columns ``ecg:NORM`` ...), since MIMIC-IV-ECG
  has no diagnostic labels of its own, and the **true X-ray findings** (``label_sets["cxr_truth"]``, columns
  ``cxr:Cardiomegaly`` ...), which evaluation prefers over the labeler's view on synthetic data;
- the **incidental findings** of a world written with ``medclr synth --incidental`` (``label_sets
  ["cxr_incidental"]``, columns ``cxr:sternotomy`` ...): drawn on the X-ray and described in the report, no
  CheXpert label. Being ``cxr:`` truth, they count in retrieval's label ceiling
  (``recall@K/<task>_label_ceiling``).

The X-ray labels stay as the MIMIC adapter reads them (a report labeler's view, uncertain included), as on
real data. The ``report`` of a study in the clinical presets is its **clinical report**: the radiology report
followed by the paired ECG's machine statements (``"... ECG: Sinus rhythm. Left ventricular hypertrophy."``),
so the report tower sees what both modalities show (the radiology report alone stays in
``meta/radiology_report``); a study whose joint label is true ends with the clinician's assessment, e.g.
"Assessment: findings consistent with congestive heart failure." (the statement that needs both
modalities). The ``xor`` preset keeps the radiology report alone: there the text must state only the
exclusive-or. The world's ``chexpert/`` and ``ptbxl/`` folders are read by their own adapters.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd

from medclr.data.manifest import LABEL_PREFIX, Manifest, ManifestInfo
from medclr.data.prepare import SOURCES, PrepareOptions, SourceResult
from medclr.errors import MedclrInputError
from medclr.io.tables import read_table

_EXPECTED = "a world written by `medclr synth` (truth.csv, mimic-cxr/, mimic-iv-ecg/)"


@SOURCES.register("synth")
def prepare_synth(options: PrepareOptions) -> SourceResult:
    """Paired manifest of a synthetic world with its joint and true ECG labels (see the module docstring)."""
    root = options.require_root("synth", _EXPECTED)
    truth = read_table(root / "truth.csv", "synthetic world truth table (truth.csv)", ["cxr_path", "ecg_path"])
    paired = SOURCES.get("mimic-paired")(
        replace(options, root=root, cxr_root=root / "mimic-cxr", ecg_root=root / "mimic-iv-ecg")
    )
    frame = paired.manifest.frame.copy()
    by_image = truth[truth["cxr_path"].notna()].set_index("cxr_path")
    if by_image.index.duplicated().any():
        raise MedclrInputError(root / "truth.csv", "an X-ray appears twice in the truth table", "regenerate the world")
    keys = "mimic-cxr/" + frame["cxr_path"].astype(str)
    joint = [c for c in truth.columns if c.startswith("joint/")]
    ecg_truth = [c for c in truth.columns if c.startswith("ecg/")]
    cxr_truth = [c for c in truth.columns if c.startswith("cxr/")]
    incidental = [c for c in truth.columns if c.startswith("incidental/")]
    for column in cxr_truth:
        frame[f"{LABEL_PREFIX}cxr:{column.removeprefix('cxr/')}"] = keys.map(by_image[column]).astype("float32")
    for column in incidental:
        frame[f"{LABEL_PREFIX}cxr:{column.removeprefix('incidental/')}"] = keys.map(by_image[column]).astype("float32")
    for column in joint:
        frame[f"{LABEL_PREFIX}{column.removeprefix('joint/')}"] = keys.map(by_image[column]).astype("float32")
    for column in ecg_truth:
        frame[f"{LABEL_PREFIX}ecg:{column.removeprefix('ecg/')}"] = keys.map(by_image[column]).astype("float32")
    world = _world_json(root)
    clinical = world.get("preset") != "xor"
    if clinical:
        frame["meta/radiology_report"] = frame["report"]
        ecg_reports = frame.get("meta/ecg_report", pd.Series(None, index=frame.index))
        hf = frame.get(f"{LABEL_PREFIX}Heart Failure", pd.Series(0.0, index=frame.index)).fillna(0.0) > 0.5
        frame["report"] = [_clinical_report(r, e, bool(h), str(sid)) for r, e, h, sid
                           in zip(frame["report"], ecg_reports, hf, frame["study_id"], strict=True)]
    info = paired.manifest.info
    label_sets = {
        **info.label_sets,
        "joint": [c.removeprefix("joint/") for c in joint],
        "ecg_truth": [f"ecg:{c.removeprefix('ecg/')}" for c in ecg_truth],
        "cxr_truth": [f"cxr:{c.removeprefix('cxr/')}" for c in cxr_truth],
        **({"cxr_incidental": [f"cxr:{c.removeprefix('incidental/')}" for c in incidental]} if incidental else {}),
    }
    new_info = ManifestInfo(**{
        **asdict(info), "source": "synth", "label_sets": label_sets,
        "label_policy": {**info.label_policy, "joint": "ground truth of the synthetic world (truth.csv)",
                         "cxr_truth": "ground truth of the synthetic world (truth.csv)",
                         "cxr_incidental": "ground truth of the synthetic world (truth.csv); no CheXpert label",
                         "ecg_truth": "ground truth of the synthetic world (truth.csv)"},
        "extra": {**info.extra, "world": world,
                  "report": "radiology report + ' ECG: ' + the paired ECG's machine statements" if clinical
                  else "radiology report (xor: states only the exclusive-or)"},
    })
    return SourceResult(Manifest(frame, new_info), paired.rejected)


HEART_FAILURE_ASSESSMENTS = (
    "Assessment: findings consistent with congestive heart failure.",
    "Assessment: heart failure.",
    "Impression: picture compatible with decompensated heart failure.",
    "Assessment: clinical and imaging findings suggest heart failure.",
)


def _clinical_report(radiology: object, ecg: object, heart_failure: bool, study_id: str) -> str | None:
    """The radiology report, then the ECG's machine statements, then the heart-failure assessment (a paraphrase
    chosen by the study id, so the manifest is deterministic); missing parts are left out."""
    parts = [str(radiology).strip() if isinstance(radiology, str) and radiology.strip() else "",
             f"ECG: {str(ecg).strip()}" if isinstance(ecg, str) and ecg.strip() else ""]
    if heart_failure:
        digest = int(hashlib.sha256(study_id.encode()).hexdigest(), 16)
        parts.append(HEART_FAILURE_ASSESSMENTS[digest % len(HEART_FAILURE_ASSESSMENTS)])
    return " ".join(p for p in parts if p) or None


def _world_json(root: Path) -> dict[str, object]:
    path = root / "world.json"
    return dict(json.loads(path.read_text())) if path.is_file() else {}
