"""Zero-shot diagnosis: score X-rays, ECGs, or both together against text prompts, with the run's own objective.

For a query (one modality, or X-ray + ECG for the joint task) ``q`` and label k with positive prompt embedding
``t+_k`` and negative ``t-_k`` (ensembles averaged, :mod:`medclr.eval.prompts`), the score function ``f`` of the
run's loss (:mod:`medclr.losses.scoring`: cosine for ConVIRT, the multilinear inner product for Symile with the
X-ray and ECG as the two given modalities, the negative Gram volume for GRAM) gives

    p_k(q) = softmax(s * [f(q, t+_k), f(q, t-_k)])[0] = sigmoid(s * (f(q, t+_k) - f(q, t-_k)))

(CheXzero's positive/negative softmax, Tiu et al., 2022; ``s`` is the learned logit scale). A label without a
negative prompt is scored by ``s * f(q, t+_k)`` (MERL's protocol). AUROC only depends on the ranking within a
label, so both forms are valid scores; the pair form is also a calibrated-looking probability for the app.

**Which label column.** The synthetic world records the true findings as ``cxr:<Label>`` and ``ecg:<Label>``
columns beside the report labeler's ``<Label>``; a prompt label ``L`` queried from modality m is scored against
``m:L`` when the manifest has it (the truth), else against ``L``. The metrics say which column each label used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medclr.eval.embeddings import Embeddings
from medclr.eval.metrics import bootstrap_ci, label_auroc_metrics
from medclr.eval.prompts import PromptSet
from medclr.losses.scoring import score_fn
from medclr.models import MedClr

FIVE_LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")


@dataclass
class PromptEmbeddings:
    """``positive [K, D]`` unit ensemble embeddings per label; ``negative [K, D]`` with ``has_negative [K]``."""

    labels: list[str]
    positive: Tensor
    negative: Tensor
    has_negative: Tensor


@torch.no_grad()
def embed_prompts(model: MedClr, prompts: PromptSet) -> PromptEmbeddings:
    """Encode every phrasing once; each label's ensemble is the re-normalised mean of its phrasings (CheXzero)."""
    labels = list(prompts.labels)
    texts = sorted({t for c in prompts.labels.values() for t in (*c.positive, *c.negative)})
    where = {t: i for i, t in enumerate(texts)}
    emb = model.encode("report", texts).float().cpu()  # [T, D] unit vectors

    def ensemble(phrases: tuple[str, ...]) -> Tensor:
        if not phrases:
            return torch.zeros(emb.shape[1])
        return F.normalize(emb[[where[t] for t in phrases]].mean(0), dim=-1)  # [D]

    positive = torch.stack([ensemble(prompts.labels[x].positive) for x in labels])  # [K, D]
    negative = torch.stack([ensemble(prompts.labels[x].negative) for x in labels])  # [K, D]
    has_negative = torch.tensor([bool(prompts.labels[x].negative) for x in labels])
    return PromptEmbeddings(labels, positive, negative, has_negative)


def prompt_scores(given: list[Tensor], text: PromptEmbeddings, loss: str, logit_scale: float) -> np.ndarray:
    """``[n, K]`` zero-shot scores of n queries (``given``: one ``[n, D]`` tensor per query modality)."""
    score = score_fn(loss)
    positive = logit_scale * score(given, text.positive)  # [n, K]
    if not bool(text.has_negative.any()):
        return positive.numpy()
    negative = logit_scale * score(given, text.negative)  # [n, K]
    pair = torch.sigmoid(positive - negative)  # = softmax over (positive, negative), the positive's share
    return torch.where(text.has_negative[None, :], pair, positive).numpy()


def label_column(emb: Embeddings, label: str, query_modalities: tuple[str, ...]) -> str | None:
    """The manifest column scored for prompt label ``label`` (see the module docstring), or None."""
    if len(query_modalities) == 1 and f"{query_modalities[0]}:{label}" in emb.label_names:
        return f"{query_modalities[0]}:{label}"
    return label if label in emb.label_names else None


@dataclass
class ZeroShotResult:
    """Metrics (flat keys) and, for plots, the labels, targets ``[n, K]`` and scores ``[n, K]`` of the rows."""

    metrics: dict[str, float | str]
    labels: list[str]
    targets: np.ndarray
    scores: np.ndarray


def zero_shot(model: MedClr, emb: Embeddings, prompts: PromptSet, *, reps: int = 1000,
              seed: int = 0) -> ZeroShotResult:
    """AUROC per label (``auroc/<Label>`` with CIs), ``auroc_macro`` and, per prompt group, ``auroc_macro/<group>``.

    Rows are those that have every query modality; labels the manifest lacks are skipped and listed under
    ``skipped_labels``.
    """
    mods = prompts.modalities
    missing = [m for m in mods if m not in emb.vectors]
    if missing:
        raise ValueError(f"the embeddings have no {', '.join(missing)} (this run/manifest lacks the modality)")
    rows = np.logical_and.reduce([emb.present[m] for m in mods])  # [n]
    columns = {x: label_column(emb, x, mods) for x in prompts.labels}
    used = [x for x, c in columns.items() if c is not None]
    metrics: dict[str, float | str] = {"n_rows": float(rows.sum()), "prompts": prompts.source,
                                       "protocol": prompts.protocol}
    skipped = [x for x, c in columns.items() if c is None]
    if skipped:
        metrics["skipped_labels"] = ", ".join(skipped)
    if not used or not rows.any():
        return ZeroShotResult(metrics, used, np.zeros((0, len(used))), np.zeros((0, len(used))))
    prompts = prompts.restricted(used)
    text = embed_prompts(model, prompts)
    given = [torch.from_numpy(emb.vectors[m][rows]) for m in mods]
    scores = prompt_scores(given, text, emb.loss, emb.logit_scale)  # [n_rows, K]
    targets = np.stack([emb.label(str(columns[x]))[rows] for x in used], axis=1)  # [n_rows, K]
    metrics.update(label_auroc_metrics(targets, scores, used, reps=reps, seed=seed))
    for x in used:
        metrics[f"column/{x}"] = str(columns[x])
    for group, members in prompts.groups.items():
        index = [used.index(x) for x in members]
        part = label_auroc_metrics(targets[:, index], scores[:, index], members, reps=reps, seed=seed)
        metrics.update({k.replace("auroc_macro", f"auroc_macro/{group}", 1): v for k, v in part.items()
                        if k.startswith("auroc_macro")})
    if set(FIVE_LABELS) <= set(used):
        five = [used.index(x) for x in FIVE_LABELS]
        similarity = score_fn(emb.loss)(given, text.positive[five]).numpy()  # [n_rows, 5]
        metrics.update(five_by_200(targets[:, five], similarity, reps=reps, seed=seed))
    return ZeroShotResult(metrics, used, targets, scores)


def five_by_200(targets: np.ndarray, similarity: np.ndarray, *, per_class: int = 200, min_per_class: int = 10,
                reps: int = 1000, seed: int = 0) -> dict[str, float]:
    """CheXpert 5x200 (GLoRIA, Huang et al., 2021) from ``targets [n, 5]`` and positive-prompt ``similarity
    [n, 5]`` of the five competition labels: images positive for exactly one label, up to ``per_class`` per label
    (drawn with ``seed``); 5-way top-1 accuracy of the argmax similarity. Empty when a label has fewer than
    ``min_per_class`` such images."""
    positive = np.nan_to_num(targets, nan=0.0) >= 0.5  # [n, 5]
    single = positive.sum(1) == 1
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for k in range(positive.shape[1]):
        rows = np.flatnonzero(single & positive[:, k])
        if len(rows) < min_per_class:
            return {}
        chosen.append(rng.permutation(rows)[:per_class])
    rows = np.concatenate(chosen)
    hits = (similarity[rows].argmax(1) == positive[rows].argmax(1)).astype(float)  # [m]
    low, high = bootstrap_ci(lambda i: float(hits[i].mean()), len(hits), reps=reps, seed=seed) if reps > 0 \
        else (float("nan"), float("nan"))
    return {"chexpert5x200/top1": float(hits.mean()), "chexpert5x200/top1_ci_low": low,
            "chexpert5x200/top1_ci_high": high, "chexpert5x200/n": float(len(rows))}
