"""Simple baselines on a generated world, so that learned models can be read against them.

``python -m medclr.synth.baselines WORLD_DIR`` fits, per finding, an L2-regularised logistic regression on

- X-rays: the image resized to 32 x 32 pixels (1,024 raw features, standardised);
- ECGs: 12-lead summary features (per lead: mean, standard deviation, 1st/99th percentile, peak-to-peak;
  from lead II: heart rate and the coefficient of variation of RR intervals) = 62 features,

on the world's train patients, and reports the test AUROC (patient-level split, as in the manifests). With
``--cnn`` it also trains the demo recipe's X-ray tower (``configs/models/demo.yaml``: a 4-stage CNN on 128 px,
mean-pooled) with a linear classifier and binary cross-entropy on every X-ray finding at once (AdamW, one-cycle
lr 1e-3, 400 steps x 32 images, seed 0): what the contrastive model's X-ray tower could reach with labels.
Labels are the ground truth of ``truth.csv``. Joint labels (``joint/*``, e.g. Heart Failure) are fitted on the
studies that have both modalities from the X-ray features, the ECG features and both concatenated: a joint
label should need both. These numbers go in ``data_cards/synth.md``: a task a 32 x 32 linear
model already solves is no test of representation learning.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.signal import find_peaks
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from medclr.io import read_cxr, read_ecg
from medclr.synth.render import subject_split

MIN_POSITIVES = 5


CNN_SIZE = 128
DEMO_MODEL = Path(__file__).resolve().parents[2] / "configs" / "models" / "demo.yaml"


def cxr_features(path: Path, size: int = 32) -> np.ndarray:
    """The display image resized to ``size`` x ``size`` (area averaging), flattened: ``[size * size]``."""
    image, _ = read_cxr(path)
    small = Image.fromarray((image * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32).ravel() / 255.0


def cnn_auroc(images: np.ndarray, labels: pd.DataFrame, train: np.ndarray, steps: int = 400, seed: int = 0
              ) -> dict[str, float]:
    """Supervised ceiling of the demo X-ray tower: ``images [N, S * S]`` in [0, 1], every label column at once
    (binary cross-entropy), trained on ``train`` rows; test AUROC per column (NaN with < MIN_POSITIVES)."""
    import torch

    from medclr.models.factory import load_model_config

    torch.manual_seed(seed)
    encoder = load_model_config(DEMO_MODEL).towers["cxr"].encoder.build()
    head = torch.nn.Linear(encoder.out_dim, labels.shape[1])
    params = [*encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-3, total_steps=steps, pct_start=0.1)
    side = math.isqrt(images.shape[1])
    x_all = torch.from_numpy(images.reshape(-1, 1, side, side))  # [N, 1, S, S]
    y_all = torch.from_numpy(labels.to_numpy(dtype=np.float32))  # [N, C]
    rows, rng = np.flatnonzero(train), np.random.default_rng(seed)
    for _ in tqdm(range(steps), desc="cnn baseline", leave=False):
        batch = torch.from_numpy(rng.choice(rows, size=min(32, rows.size), replace=False))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(encoder(x_all[batch]).pooled), y_all[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    encoder.eval()
    with torch.no_grad():
        test = torch.from_numpy(np.flatnonzero(~train))
        scores = torch.cat([torch.sigmoid(head(encoder(x_all[test[i:i + 64]]).pooled))
                            for i in range(0, test.numel(), 64)]).numpy()  # [N_test, C]
    out: dict[str, float] = {}
    for j, column in enumerate(labels.columns):
        y = y_all[:, j].numpy()
        y_train, y_test = y[train], y[~train]
        out[column] = float(roc_auc_score(y_test, scores[:, j])) if _scorable(y_train, y_test) else float("nan")
    return out


def ecg_features(path: Path) -> np.ndarray:
    """Per-lead amplitude statistics plus rate and RR irregularity from lead II: ``[62]``."""
    signal, meta = read_ecg(path)  # [12, T] mV
    signal = signal - np.median(signal, axis=1, keepdims=True)
    stats = [signal.mean(1), signal.std(1), np.percentile(signal, 1, axis=1), np.percentile(signal, 99, axis=1),
             np.ptp(signal, axis=1)]
    lead_ii = signal[1]
    peaks, _ = find_peaks(lead_ii, height=0.5 * np.percentile(lead_ii, 99), distance=int(0.25 * meta.fs))
    rr = np.diff(peaks) / meta.fs
    rate = 60.0 / rr.mean() if rr.size else 0.0
    cv = rr.std() / rr.mean() if rr.size > 1 else 0.0
    return np.concatenate([*stats, [rate, cv]]).astype(np.float32)


def _scorable(y_train: np.ndarray, y_test: np.ndarray) -> bool:
    """Both splits hold at least MIN_POSITIVES positives and negatives of a 0/1 label."""
    return min(y_train.sum(), (1 - y_train).sum(), y_test.sum(), (1 - y_test).sum()) >= MIN_POSITIVES


def auroc_table(features: np.ndarray, labels: pd.DataFrame, train: np.ndarray) -> dict[str, float]:
    """Test AUROC per label column (NaN where a split has too few positives or negatives)."""
    out: dict[str, float] = {}
    for column in labels.columns:
        y = labels[column].to_numpy(dtype=float)
        y_train, y_test = y[train], y[~train]
        if not _scorable(y_train, y_test):
            out[column] = float("nan")
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        model.fit(features[train], y_train)
        out[column] = float(roc_auc_score(y_test, model.predict_proba(features[~train])[:, 1]))
    return out


def run(world: Path, cnn: bool = False) -> pd.DataFrame:
    """Test AUROC per label (rows) for the X-ray, ECG and joint (both concatenated) features (columns); with
    ``cnn`` also the supervised X-ray CNN (column ``cxr cnn``)."""
    truth = pd.read_csv(world / "truth.csv", keep_default_na=False, na_values=[""])
    train = np.array([subject_split(int(s)) == "train" for s in truth["subject_id"]])
    features: dict[str, np.ndarray] = {}  # modality -> [N, F], NaN rows where the study lacks it
    for modality, featurise in (("cxr", cxr_features), ("ecg", ecg_features)):
        rows = truth.index[truth[f"{modality}_path"].notna()]
        paths = truth.loc[rows, f"{modality}_path"].astype(str)
        values = np.stack([featurise(world / p) for p in tqdm(paths, desc=f"{modality} features", leave=False)])
        features[modality] = np.full((len(truth), values.shape[1]), np.nan, dtype=np.float32)
        features[modality][rows] = values
    results: dict[str, dict[str, float]] = {"cxr": {}, "ecg": {}, "cxr+ecg": {}}
    for modality in ("cxr", "ecg"):
        has = ~np.isnan(features[modality][:, 0])
        labels = truth.loc[has, [c for c in truth.columns if c.startswith(f"{modality}/")]]
        results[modality] = auroc_table(features[modality][has], labels, train[has])
    if cnn:
        has = truth.index[truth["cxr_path"].notna()]
        images = np.stack([cxr_features(world / str(p), CNN_SIZE) for p in
                           tqdm(truth.loc[has, "cxr_path"], desc=f"cxr {CNN_SIZE} px", leave=False)])
        labels = truth.loc[has, [c for c in truth.columns if c.startswith("cxr/")]]
        results["cxr cnn"] = cnn_auroc(images, labels, train[has])
    both = ~np.isnan(features["cxr"][:, 0]) & ~np.isnan(features["ecg"][:, 0])
    joint = truth.loc[both, [c for c in truth.columns if c.startswith("joint/")]]
    combined = {"cxr": features["cxr"], "ecg": features["ecg"],
                "cxr+ecg": np.concatenate([features["cxr"], features["ecg"]], axis=1)}
    for name, matrix in combined.items():
        results[name].update(auroc_table(matrix[both], joint, train[both]))
    return pd.DataFrame({m: pd.Series(r) for m, r in results.items()})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("world", type=Path, help="a folder written by `medclr synth`")
    parser.add_argument("--cnn", action="store_true",
                        help=f"also train the demo X-ray CNN supervised on {CNN_SIZE} px images (minutes on 2 cores)")
    args = parser.parse_args(argv)
    table = run(args.world, cnn=args.cnn)
    sys.stdout.write(table.to_string(float_format=lambda v: f"{v:.3f}") + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
