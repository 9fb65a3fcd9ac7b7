"""Periodic validation on the held-out split: cross-modal retrieval and per-modality linear probes.

Two complementary signals pick the best checkpoint and catch the failure modes of contrastive training:

* **Retrieval recall@1** (label-free; the zero-shot task the loss trains for). For a modality pair (a, b) and the
  n validation rows that have both, row i's query ``a_i`` ranks all ``b_j`` by cosine similarity; recall@1 is
  the fraction of rows whose own partner ranks first (chance: 1/n). Reported per direction as
  ``val/r1/<a>-><b>`` and averaged as ``val/r1_mean``. Memorising the training pairs raises the training loss
  curve but not this number.
* **Linear-probe AUROC** (Alain & Bengio, 2017; the standard frozen-feature test). For each modality and each
  label with at least 5 known positives and 5 known negatives (NaN = unknown rows are left out), a logistic
  regression on the frozen, L2-normalised embeddings is fitted by stratified k-fold cross-validation over the
  validation rows and scored by ROC AUC on the held-out folds. ``val/probe_auroc/<modality>`` is the mean over
  labels, ``val/probe_auroc_mean`` the mean over modalities. A tower that collapsed (all embeddings equal, or
  zeros because the modality was never seen) probes at ~0.5 even when retrieval between the other towers looks
  fine.

* **Zero-shot AUROC** (the task the model is for, and the demo's selection metric): the query modality's
  embeddings scored against the default prompts (:func:`medclr.eval.prompts.default_prompts`: CheXzero pairs for
  X-rays, PTB-XL statement descriptions or ``configs/prompts/ecg.yaml`` for ECGs) with the objective's own score
  (:mod:`medclr.eval.zero_shot`); ``val/zeroshot_auroc/<modality>`` is the macro AUROC over the labels the
  validation rows have (``val/zeroshot_auroc/<modality>/<label>`` each), ``val/zeroshot_auroc_mean`` the mean
  over modalities and ``val/zeroshot_auroc_label_mean`` the mean over every (modality, label) AUROC, which picks
  the best checkpoint: each label counts once, so a prompt set with one label (the demo world's joint Heart
  Failure, ~20 validation positives, swinging by +-0.15 between validations) weighs 1/11 of the selection
  there (5 X-ray + 5 ECG + 1 joint label) instead of 1/3. Without zero-shot labels a run is selected on
  probes, which reward any linearly separable feature, not the alignment with text.

Metrics are flat keys, as everywhere in medclr.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from medclr.models import MedClr
from medclr.types import Batch

if TYPE_CHECKING:
    from medclr.eval.prompts import PromptSet

log = logging.getLogger(__name__)

MIN_CLASS_ROWS = 5


@torch.no_grad()
def embed_batches(model: nn.Module, batches: Iterable[Batch], device: torch.device,
                  modalities: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """``({m: [n, D]}, {m: [n] present}, labels [n, K])`` over all batches, in eval mode."""
    emb: dict[str, list[np.ndarray]] = {m: [] for m in modalities}
    present: dict[str, list[np.ndarray]] = {m: [] for m in modalities}
    labels: list[np.ndarray] = []
    for batch in batches:
        out = model(batch.to(device))
        for m in modalities:
            mask = batch.present.get(m, torch.zeros(batch.size, dtype=torch.bool))
            rows = out[m].float().cpu().numpy() if m in out else np.zeros((batch.size, _embed_dim(model)), np.float32)
            emb[m].append(rows)
            present[m].append(mask.cpu().numpy())
        if batch.labels is not None:
            labels.append(batch.labels.cpu().numpy())
    cat = {m: _cat(v) for m, v in emb.items()}
    return cat, {m: np.concatenate(v) for m, v in present.items()}, _cat(labels)


def recall_at_1(a: np.ndarray, b: np.ndarray, positives: np.ndarray | None = None) -> float:
    """Fraction of rows i whose most similar row j of ``b`` (dot product) is a positive: ``j == i``, or
    ``positives[i, j]`` (e.g. row j's report is the same text as row i's)."""
    top = (a @ b.T).argmax(axis=1)  # [n]
    hits = top == np.arange(len(a)) if positives is None else positives[np.arange(len(a)), top]
    return float(np.mean(hits))


def retrieval_metrics(emb: dict[str, np.ndarray], present: dict[str, np.ndarray],
                      groups: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """``val/r1/<a>-><b>`` for every ordered pair with >= 2 shared rows, and ``val/r1_mean``.

    ``groups[m]`` ``[n]`` marks identical items of modality m (equal ids); retrieving an item identical to the
    partner, or the partner of an identical query, counts as a hit (as the loss treats them as positives).
    """
    out = {}
    for a, b in itertools.permutations(emb, 2):
        both = present[a] & present[b]
        if both.sum() < 2 or emb[a].shape[1] != emb[b].shape[1]:
            continue
        positives = np.eye(int(both.sum()), dtype=bool)
        for m in (a, b):
            if groups is not None and m in groups:
                ids = groups[m][both]
                positives |= ids[:, None] == ids[None, :]
        out[f"val/r1/{a}->{b}"] = recall_at_1(emb[a][both], emb[b][both], positives)
    if out:
        out["val/r1_mean"] = float(np.mean(list(out.values())))
    return out


def probe_auroc(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[int, float]:
    """Cross-validated logistic-regression AUROC per label column of ``y`` (NaN = unknown) with enough rows."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    out = {}
    for k in range(y.shape[1]):
        known = ~np.isnan(y[:, k])
        target = (y[known, k] >= 0.5).astype(int)
        minority = int(min(target.sum(), len(target) - target.sum())) if len(target) else 0
        if minority < MIN_CLASS_ROWS:
            continue
        folds = StratifiedKFold(n_splits=min(5, minority), shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            scores = cross_val_predict(LogisticRegression(max_iter=500, C=1.0), x[known], target, cv=folds,
                                       method="decision_function")
        out[k] = float(roc_auc_score(target, scores))
    return out


def probe_metrics(emb: dict[str, np.ndarray], present: dict[str, np.ndarray], labels: np.ndarray,
                  label_names: Sequence[str], seed: int = 0) -> dict[str, float]:
    """``val/probe_auroc/<m>`` (mean over probed labels), per-label ``val/probe_auroc/<m>/<label>``, and mean."""
    out: dict[str, float] = {}
    if labels.size == 0:
        return out
    per_modality = []
    for m, x in emb.items():
        rows = present[m]
        if rows.sum() < 2 * MIN_CLASS_ROWS:
            continue
        scores = probe_auroc(x[rows], labels[rows], seed)
        for k, value in scores.items():
            out[f"val/probe_auroc/{m}/{label_names[k]}"] = value
        if scores:
            out[f"val/probe_auroc/{m}"] = float(np.mean(list(scores.values())))
            per_modality.append(out[f"val/probe_auroc/{m}"])
    if per_modality:
        out["val/probe_auroc_mean"] = float(np.mean(per_modality))
    return out


def zero_shot_metrics(model: MedClr, emb: dict[str, np.ndarray], present: dict[str, np.ndarray], labels: np.ndarray,
                      label_names: Sequence[str], prompts: Mapping[str, PromptSet], loss_name: str) -> dict[str, float]:
    """``val/zeroshot_auroc/<query>`` (macro) and ``val/zeroshot_auroc/<query>/<label>`` per prompt set whose query
    modalities were embedded; their mean over prompt sets (``val/zeroshot_auroc_mean``) and over all labels
    (``val/zeroshot_auroc_label_mean``)."""
    from medclr.eval.embeddings import Embeddings
    from medclr.eval.zero_shot import zero_shot

    if labels.size == 0 or "report" not in model.modalities:
        return {}
    table = Embeddings(emb, present, labels, list(label_names), pd.DataFrame(index=range(len(labels))), loss_name,
                       model.logit_scale.item())
    out: dict[str, float] = {}
    macros: list[float] = []
    per_label: list[float] = []
    for query, prompt_set in prompts.items():
        if not all(m in emb and present[m].any() for m in prompt_set.modalities):
            continue
        result = zero_shot(model, table, prompt_set, reps=0)
        macro = result.metrics.get("auroc_macro")
        if not (isinstance(macro, float) and np.isfinite(macro)):
            continue
        out[f"val/zeroshot_auroc/{query}"] = macro
        macros.append(macro)
        for label in result.labels:
            value = result.metrics.get(f"auroc/{label}")
            if isinstance(value, float) and np.isfinite(value):
                out[f"val/zeroshot_auroc/{query}/{label}"] = value
                per_label.append(value)
    if macros:
        out["val/zeroshot_auroc_mean"] = float(np.mean(macros))
        out["val/zeroshot_auroc_label_mean"] = float(np.mean(per_label))
    return out


def validate(model: nn.Module, batches: Iterable[Batch], device: torch.device, modalities: Sequence[str],
             label_names: Sequence[str], seed: int = 0, groups: dict[str, np.ndarray] | None = None,
             prompts: Mapping[str, PromptSet] | None = None, loss_name: str = "convirt") -> dict[str, float]:
    """Embed the validation split and compute retrieval, probe and (with ``prompts``) zero-shot metrics (model
    left in eval mode)."""
    model.eval()
    emb, present, labels = embed_batches(model, batches, device, modalities)
    metrics = {"val/rows": float(len(next(iter(present.values()))))}
    metrics.update(retrieval_metrics(emb, present, groups))
    metrics.update(probe_metrics(emb, present, labels, label_names, seed))
    if prompts and isinstance(model, MedClr):
        metrics.update(zero_shot_metrics(model, emb, present, labels, label_names, prompts, loss_name))
    return metrics


def _embed_dim(model: nn.Module) -> int:
    return int(getattr(model, "embed_dim", 1))


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
