"""Evaluation plots (PNG, matplotlib's Agg backend): ROC curves per label and retrieval examples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medclr.atomic import atomic_path
from medclr.data.manifest import Manifest
from medclr.eval.embeddings import Embeddings
from medclr.eval.metrics import auroc


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roc_curves_png(targets: np.ndarray, scores: np.ndarray, labels: Sequence[str], path: Path, title: str) -> Path:
    """One ROC curve per label (``targets``/``scores`` ``[n, K]``, NaN targets dropped) with AUROC in the legend."""
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    for k, label in enumerate(labels):
        known = ~np.isnan(targets[:, k])
        y = targets[known, k] >= 0.5
        if y.all() or not y.any():
            continue
        fpr, tpr, _ = roc_curve(y, scores[known, k])
        ax.plot(fpr, tpr, lw=1.5, label=f"{label} ({auroc(targets[:, k], scores[:, k]):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=7, loc="lower right", title="label (AUROC)", title_fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def retrieval_examples_png(emb: Embeddings, path: Path, manifest: Manifest, queries: int = 3, top: int = 4,
                           seed: int = 0) -> Path:
    """For a few report queries: the text and the ``top`` X-rays the run ranks highest (true partner in green)."""
    import torch

    from medclr.io import read_cxr
    from medclr.losses.scoring import score_fn

    plt = _pyplot()
    rows = np.flatnonzero(emb.present["report"] & emb.present["cxr"])
    rng = np.random.default_rng(seed)
    chosen = rng.choice(rows, size=min(queries, len(rows)), replace=False)
    scores = score_fn(emb.loss)([torch.from_numpy(emb.vectors["report"][chosen])],
                                torch.from_numpy(emb.vectors["cxr"][rows])).numpy()  # [q, n]
    fig, axes = plt.subplots(len(chosen), top + 1, figsize=(2.2 * (top + 1), 2.4 * len(chosen)), dpi=110,
                             squeeze=False)
    for i, query in enumerate(chosen):
        text = str(emb.rows["report"][query])
        axes[i, 0].text(0, 1, _wrap(text, 34, 12), va="top", fontsize=6, family="monospace")
        axes[i, 0].axis("off")
        for j, candidate in enumerate(rows[np.argsort(-scores[i])[:top]]):
            ax = axes[i, j + 1]
            image, _ = read_cxr(manifest.resolve("cxr", str(emb.rows["cxr_path"][candidate])))
            ax.imshow(image, cmap="gray")
            hit = candidate == query
            ax.set_title(f"#{j + 1}{' (partner)' if hit else ''}", fontsize=7, color="green" if hit else "black")
            ax.axis("off")
    fig.suptitle("report -> X-ray retrieval: top candidates", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _wrap(text: str, width: int, lines: int) -> str:
    import textwrap

    wrapped = textwrap.wrap(" ".join(text.split()), width)
    return "\n".join(wrapped[:lines]) + ("\n..." if len(wrapped) > lines else "")
