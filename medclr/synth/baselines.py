"""Simple baselines on a generated world, so that learned models can be read against them.

``python -m medclr.synth.baselines WORLD_DIR`` fits, per finding, an L2-regularised logistic regression on

- X-rays: the image resized to 32 x 32 pixels (1,024 raw features, standardised);
- ECGs: 12-lead summary features (per lead: mean, standard deviation, 1st/99th percentile, peak-to-peak;
  from lead II: heart rate and the coefficient of variation of RR intervals) = 62 features,

on the world's train patients, and reports the test AUROC (patient-level: the world's own split of its MIMIC
split and MS-CXR files; the paired manifests hash-split patients another way, so the test rows differ). With
``--cnn`` it also trains the demo recipe's X-ray tower (``configs/models/demo.yaml``: a 4-stage CNN on 128 px
letterboxed images, mean-pooled) with a linear classifier and binary cross-entropy on every X-ray finding at once
(AdamW, one-cycle lr 1e-3, 400 steps x 32 images, seed 0): what the contrastive model's X-ray tower could reach
with labels; and scores its class activation maps in the pointing game on the world's MS-CXR phrases
(:func:`cam_pointing_game`): where a CNN that knows the labels looks.
Labels are the ground truth of ``truth.csv``. Joint labels (``joint/*``, e.g. Heart Failure) are fitted on the
studies that have both modalities from the X-ray features, the ECG features and both concatenated: a joint
label should need both. These numbers go in ``data_cards/synth.md``: a task a 32 x 32 linear
model already solves is no test of representation learning.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from scipy.signal import find_peaks
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from tqdm.auto import tqdm

from medclr.data.sources.ms_cxr import CATEGORIES as MS_CXR_CATEGORIES
from medclr.data.transforms import resize_pad
from medclr.eval.grounding_maps import TokenLayout, cxr_grid_to_original
from medclr.eval.grounding_metrics import POINTING_TOLERANCE_PX, pointing_game, pointing_game_key
from medclr.io import read_cxr, read_ecg
from medclr.synth.cxr import Box, grounding_phrases
from medclr.synth.render import subject_split
from medclr.types import Geometry

MIN_POSITIVES = 5


CNN_SIZE = 128
DEMO_MODEL = Path(__file__).resolve().parents[2] / "configs" / "models" / "demo.yaml"


def cxr_features(path: Path, size: int = 32) -> np.ndarray:
    """The display image resized to ``size`` x ``size`` (area averaging), flattened: ``[size * size]``."""
    image, _ = read_cxr(path)
    small = Image.fromarray((image * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32).ravel() / 255.0


@dataclass
class SupervisedCnn:
    """The demo recipe's X-ray tower + a linear classifier, trained on labels (:func:`train_cnn`)."""

    encoder: nn.Module
    head: nn.Linear
    columns: list[str]  # the label columns, in head order

    def scores(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        """Sigmoid probabilities ``[N, C]`` of letterboxed ``images [N, S, S]``."""
        with torch.no_grad():
            return torch.cat([torch.sigmoid(self.head(self.encoder(_tensor(images[i:i + batch])).pooled))
                              for i in range(0, len(images), batch)]).numpy()

    def cam(self, image: np.ndarray) -> tuple[np.ndarray, TokenLayout]:
        """Class activation maps (Zhou et al., 2016) ``[C, h, w]`` of one letterboxed ``image [S, S]`` and their
        token layout. The tower mean-pools its tokens, so the logit of label ``k`` is ``b_k + mean_n w_k . t_n``:
        cell ``n``'s map value ``w_k . t_n`` is its exact contribution (as the contrastive model's phrase maps)."""
        with torch.no_grad():
            out = self.encoder(_tensor(image[None]))
            tokens = out.tokens[0]  # [h * w, F]
            maps = (tokens @ self.head.weight.T).T.reshape(len(self.columns), *out.grid)  # [C, h, w]
        return maps.numpy(), TokenLayout.of(out)


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]  # [N, 1, S, S]


def cxr_input(path: Path, size: int = CNN_SIZE) -> tuple[np.ndarray, Geometry]:
    """The display image letterboxed to ``size`` x ``size`` as the model's cache stores it (long side resized,
    zero-padded; :func:`medclr.data.transforms.resize_pad`) and the geometry that maps it back."""
    image, _ = read_cxr(path)
    resized, geometry = resize_pad(image, size)
    return resized, geometry.geometry()


def train_cnn(images: np.ndarray, labels: pd.DataFrame, train: np.ndarray, steps: int = 400, seed: int = 0
              ) -> SupervisedCnn:
    """Fit the demo X-ray tower + a linear head on ``images [N, S, S]`` in [0, 1], every label column at once
    (binary cross-entropy; AdamW, one-cycle lr 1e-3, batches of 32 ``train`` rows)."""
    from medclr.models.factory import load_model_config

    torch.manual_seed(seed)
    encoder = load_model_config(DEMO_MODEL).towers["cxr"].encoder.build()
    head = nn.Linear(encoder.out_dim, labels.shape[1])
    params = [*encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-3, total_steps=steps, pct_start=0.1)
    y_all = torch.from_numpy(labels.to_numpy(dtype=np.float32, copy=True))  # [N, C]
    rows, rng = np.flatnonzero(train), np.random.default_rng(seed)
    for _ in tqdm(range(steps), desc="cnn baseline", leave=False):
        batch = rng.choice(rows, size=min(32, rows.size), replace=False)
        logits = head(encoder(_tensor(images[batch])).pooled)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y_all[torch.from_numpy(batch)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    encoder.eval()
    return SupervisedCnn(encoder, head, list(labels.columns))


def cnn_auroc(model: SupervisedCnn, images: np.ndarray, labels: pd.DataFrame, train: np.ndarray
              ) -> dict[str, float]:
    """Supervised ceiling of the demo X-ray tower: test AUROC per label column (NaN with < MIN_POSITIVES)."""
    scores = model.scores(images[~train])  # [N_test, C]
    out: dict[str, float] = {}
    for j, column in enumerate(model.columns):
        y = labels[column].to_numpy(dtype=float)
        y_train, y_test = y[train], y[~train]
        out[column] = float(roc_auc_score(y_test, scores[:, j])) if _scorable(y_train, y_test) else float("nan")
    return out


def _box(cell: dict[str, Any]) -> Box:
    """A ``truth.csv`` box ``{"label", "location", "box": [x, y, w, h]}`` as a :class:`Box`."""
    x, y, w, h = (float(v) for v in cell["box"])
    return Box(cell["label"], x, y, w, h, cell["location"])


def cam_pointing_game(model: SupervisedCnn, images: np.ndarray, geometries: Sequence[Geometry],
                      boxes: Sequence[str], train: np.ndarray) -> pd.DataFrame:
    """The pointing game of the supervised CNN's class activation maps on the X-rays outside ``train``: one record
    per phrase of the world's MS-CXR file (:func:`medclr.synth.cxr.grounding_phrases` of the ``truth.csv`` cells
    ``boxes``), scored exactly as ``medclr eval --task grounding`` scores a phrase map (the map laid back onto the
    original pixels through the geometry; hit = its maximum inside one of the phrase's boxes). The map is the
    label's, not the phrase's: a CAM cannot tell the left base from the right, so a phrase naming one side can be
    missed where the contrastive model, which reads the location, need not miss it.
    Rows: label, then ``MS-CXR findings`` (the phrases of MS-CXR's eight findings: ``medclr eval``'s headline) and
    ``all``; columns ``pointing_game``, ``pointing_game@15px`` (Zhang et al.'s tolerance, as ``medclr eval``
    reports it) and ``n_phrases``."""
    tolerant = pointing_game_key(POINTING_TOLERANCE_PX)
    records: list[tuple[str, float, float]] = []
    for i in np.flatnonzero(~train).tolist():
        phrases = grounding_phrases([_box(b) for b in json.loads(boxes[i])])
        if not phrases:
            continue
        maps, layout = model.cam(images[i])
        for _, found in phrases:
            label = found[0].label
            if f"cxr/{label}" in model.columns:
                sim = cxr_grid_to_original(maps[model.columns.index(f"cxr/{label}")], layout, geometries[i])
                xywh = [[b.x, b.y, b.w, b.h] for b in found]
                records.append((label, pointing_game(sim, xywh), pointing_game(sim, xywh, POINTING_TOLERANCE_PX)))
    table = pd.DataFrame(records, columns=["label", "pointing_game", tolerant])
    per_label = table.groupby("label").agg(pointing_game=("pointing_game", "mean"), tol=(tolerant, "mean"),
                                           n_phrases=("label", "size")).rename(columns={"tol": tolerant})
    ms_cxr = table[table["label"].isin(MS_CXR_CATEGORIES)]
    per_label.loc["MS-CXR findings"] = [ms_cxr["pointing_game"].mean(), ms_cxr[tolerant].mean(), len(ms_cxr)]
    per_label.loc["all"] = [table["pointing_game"].mean(), table[tolerant].mean(), len(table)]
    return per_label


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


def run(world: Path, cnn: bool = False) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Test AUROC per label (rows) for the X-ray, ECG and joint (both concatenated) features (columns); with
    ``cnn`` also the supervised X-ray CNN (column ``cxr cnn``) and its CAM pointing game (else None)."""
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
    pointing = None
    if cnn:
        has = truth.index[truth["cxr_path"].notna()]
        inputs = [cxr_input(world / str(p)) for p in tqdm(truth.loc[has, "cxr_path"], desc=f"cxr {CNN_SIZE} px",
                                                          leave=False)]
        images = np.stack([image for image, _ in inputs])  # [N, S, S]
        labels = truth.loc[has, [c for c in truth.columns if c.startswith("cxr/")]]
        model = train_cnn(images, labels, train[has])
        results["cxr cnn"] = cnn_auroc(model, images, labels, train[has])
        pointing = cam_pointing_game(model, images, [g for _, g in inputs], truth.loc[has, "boxes"].tolist(),
                                     train[has])
    both = ~np.isnan(features["cxr"][:, 0]) & ~np.isnan(features["ecg"][:, 0])
    joint = truth.loc[both, [c for c in truth.columns if c.startswith("joint/")]]
    combined = {"cxr": features["cxr"], "ecg": features["ecg"],
                "cxr+ecg": np.concatenate([features["cxr"], features["ecg"]], axis=1)}
    for name, matrix in combined.items():
        results[name].update(auroc_table(matrix[both], joint, train[both]))
    return pd.DataFrame({m: pd.Series(r) for m, r in results.items()}), pointing


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("world", type=Path, help="a folder written by `medclr synth`")
    parser.add_argument("--cnn", action="store_true",
                        help=f"also train the demo X-ray CNN supervised on {CNN_SIZE} px images (minutes on 2 cores)")
    args = parser.parse_args(argv)
    table, pointing = run(args.world, cnn=args.cnn)
    sys.stdout.write(table.to_string(float_format=lambda v: f"{v:.3f}") + "\n")
    if pointing is not None:
        sys.stdout.write("\nsupervised CNN, class activation maps: pointing game on the phrases of non-train X-rays\n")
        sys.stdout.write(pointing.to_string(formatters={"n_phrases": "{:.0f}".format},
                                            float_format=lambda v: f"{v:.3f}") + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
