"""The synthetic world of ``medclr synth``: its MIMIC part paired, plus the joint labels from its truth table.

``medclr prepare synth --root WORLD`` runs the real ``mimic-paired`` adapter on ``WORLD/mimic-cxr`` and
``WORLD/mimic-iv-ecg`` (exactly as on real MIMIC), then adds from ``WORLD/truth.csv``:

- the **joint labels** (``label_sets["joint"]``): facts stated in the report that need both modalities
  (``Heart Failure`` in the clinical presets, ``Discordant Cardiac Findings`` = X-ray bit XOR ECG bit in
  ``xor``; see :mod:`medclr.synth.latent`);
- the **true ECG superclasses** (``label_sets["ecg_truth"]``, columns ``ecg:NORM`` ...), since MIMIC-IV-ECG
  has no diagnostic labels of its own.

The X-ray labels stay as the MIMIC adapter reads them (a report labeler's view, uncertain included), as on
real data. The world's ``chexpert/`` and ``ptbxl/`` folders are read by their own adapters.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

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
    for column in joint:
        frame[f"{LABEL_PREFIX}{column.removeprefix('joint/')}"] = keys.map(by_image[column]).astype("float32")
    for column in ecg_truth:
        frame[f"{LABEL_PREFIX}ecg:{column.removeprefix('ecg/')}"] = keys.map(by_image[column]).astype("float32")
    info = paired.manifest.info
    label_sets = {
        **info.label_sets,
        "joint": [c.removeprefix("joint/") for c in joint],
        "ecg_truth": [f"ecg:{c.removeprefix('ecg/')}" for c in ecg_truth],
    }
    new_info = ManifestInfo(**{
        **asdict(info), "source": "synth", "label_sets": label_sets,
        "label_policy": {**info.label_policy, "joint": "ground truth of the synthetic world (truth.csv)"},
        "extra": {**info.extra, "world": _world_json(root)},
    })
    return SourceResult(Manifest(frame, new_info), paired.rejected)


def _world_json(root: Path) -> dict[str, object]:
    path = root / "world.json"
    return dict(json.loads(path.read_text())) if path.is_file() else {}
