"""Linear probe: logistic regression on frozen embeddings with 1 %, 10 % and 100 % of the training labels.

The standard test of what a frozen representation linearly encodes (Alain & Bengio, 2017; the label-efficiency
protocol of ConVIRT and MERL: 1 / 10 / 100 % of the training set). For each modality and label, rows of the
training split that have the modality and a known label are subsampled to the fraction (stratified, seeded,
at least ``MIN_PER_CLASS`` rows per class or the fraction is skipped), an L2-regularised logistic regression
(scikit-learn, ``C = 1``, features = the unit embeddings) is fitted, and AUROC is measured on the evaluation
rows with a bootstrap CI.

Keys: ``probe/<m>/<pct>%/auroc/<Label>`` (+ ``_ci_low``/``_ci_high``, ``n_pos``/``n_neg``),
``probe/<m>/<pct>%/auroc_macro`` (+ CI) and ``probe/<m>/<pct>%/n_train``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from medclr.eval.embeddings import Embeddings
from medclr.eval.metrics import label_auroc_metrics

FRACTIONS = (0.01, 0.1, 1.0)
MIN_PER_CLASS = 2


def stratified_subset(y: np.ndarray, fraction: float, seed: int) -> np.ndarray | None:
    """Row indices: ``fraction`` of each class of binary ``y [n]`` (at least MIN_PER_CLASS each), or None."""
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in (0, 1):
        rows = np.flatnonzero(y == cls)
        take = max(MIN_PER_CLASS, round(fraction * len(rows)))
        if len(rows) < take:
            return None
        chosen.append(rng.permutation(rows)[:take])
    return np.sort(np.concatenate(chosen))


def fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int) -> np.ndarray:
    """Decision values ``[n_test]`` of a logistic regression fitted on ``(x_train, y_train)``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(x_train, y_train)
    return np.asarray(model.decision_function(x_test))


def linear_probe(train: Embeddings, test: Embeddings, labels: Mapping[str, Sequence[str]], *,
                 fractions: Sequence[float] = FRACTIONS, reps: int = 1000, seed: int = 0) -> dict[str, float]:
    """Probe metrics (module docstring) for ``labels``: ``{modality: [label column, ...]}``."""
    out: dict[str, float] = {}
    for m, columns in labels.items():
        if m not in train.vectors or m not in test.vectors:
            continue
        for fraction in fractions:
            prefix = f"probe/{m}/{fraction * 100:g}%"
            scores, targets, names = [], [], []
            n_train = 0
            for column in columns:
                y_tr, y_te = train.label(column), test.label(column)
                rows_tr = train.present[m] & ~np.isnan(y_tr)
                rows_te = test.present[m] & ~np.isnan(y_te)
                if not rows_te.any():
                    continue
                subset = stratified_subset((y_tr[rows_tr] >= 0.5).astype(int), fraction, seed)
                if subset is None:
                    continue
                x_tr = train.vectors[m][rows_tr][subset]
                decision = np.full(len(test), np.nan)
                decision[rows_te] = fit_predict(x_tr, (y_tr[rows_tr][subset] >= 0.5).astype(int),
                                                test.vectors[m][rows_te], seed)
                scores.append(decision)
                targets.append(np.where(rows_te, y_te, np.nan))
                names.append(column)
                n_train = max(n_train, len(subset))
            if not names:
                continue
            part = label_auroc_metrics(np.stack(targets, 1), np.nan_to_num(np.stack(scores, 1)), names, reps=reps,
                                       seed=seed)
            out.update({f"{prefix}/{k}": v for k, v in part.items()})
            out[f"{prefix}/n_train"] = float(n_train)
    return out
