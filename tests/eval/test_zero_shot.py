"""Prompt files, zero-shot scoring against hand-computed values, label resolution and CheXpert 5x200."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from medclr.eval.embeddings import Embeddings
from medclr.eval.prompts import PROMPTS_DIR, ClassPrompts, PromptSet, load_prompts, prompts_from_descriptions
from medclr.eval.zero_shot import PromptEmbeddings, embed_prompts, five_by_200, label_column, prompt_scores, zero_shot
from medclr.models.config import MedclrConfigError


def test_every_builtin_prompt_file_loads() -> None:
    files = sorted(PROMPTS_DIR.glob("*.yaml"))
    assert {f.stem for f in files} >= {"chexpert", "ecg", "joint"}
    for path in files:
        prompts = load_prompts(path)
        assert prompts.labels and all(c.positive for c in prompts.labels.values())
    chexpert = load_prompts(PROMPTS_DIR / "chexpert.yaml")
    assert list(chexpert.labels) == ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
    assert all(c.negative for c in chexpert.labels.values())  # CheXzero pairs


@pytest.mark.parametrize(("text", "needle"), [
    ("query: cxr\nlabels: {A: {positive: [a]}}\ncolour: red\n", "unknown key"),
    ("query: lungs\nlabels: {A: {positive: [a]}}\n", "query"),
    ("query: cxr\nlabels: {A: {negative: [no a]}}\n", "labels.A.positive"),
    ("query: cxr\nlabels: {A: {positive: [a], maybe: [b]}}\n", "labels.A"),
    ("query: cxr\nlabels: []\n", "labels"),
])
def test_bad_prompt_files_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(MedclrConfigError, match=needle):
        load_prompts(path)


def test_prompts_from_descriptions_follow_codes_and_groups() -> None:
    descriptions = {"NORM": "normal ECG", "IMI": "inferior myocardial infarction", "AFIB": "atrial fibrillation"}
    sets = {"superclass": ["NORM", "MI"], "subclass": ["IMI"], "rhythm": ["rhythm:AFIB"]}
    prompts = prompts_from_descriptions(descriptions, sets, {"rhythm:AFIB": ["AFIB"]})
    assert prompts.labels == {"NORM": ClassPrompts(("normal ECG",)), "IMI": ClassPrompts(("inferior myocardial "
                                                                                          "infarction",)),
                              "rhythm:AFIB": ClassPrompts(("atrial fibrillation",))}
    assert prompts.groups == {"superclass": ["NORM"], "subclass": ["IMI"], "rhythm": ["rhythm:AFIB"]}
    assert prompts.query == "ecg" and "MERL" in prompts.protocol


def test_prompt_scores_are_the_chexzero_pair_softmax() -> None:
    q = F.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), dim=-1)  # [2, 2]
    pos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    neg = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    text = PromptEmbeddings(["A", "B"], pos, neg, torch.tensor([True, False]))
    s = 10.0
    got = prompt_scores([q], text, "convirt", s)
    # label A: softmax over (cos(q, pos), cos(q, neg)); label B (no negative): s * cos(q, pos)
    expected = np.array([[1 / (1 + math.exp(-s * (1.0 - 0.0))), s * 0.0],
                         [1 / (1 + math.exp(-s * (0.6 - 0.8))), s * 0.8]])
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    pair = torch.softmax(s * torch.tensor([0.6, 0.8]), 0)[0].item()
    assert got[1, 0] == pytest.approx(pair, rel=1e-5)


def test_symile_joint_scores_use_the_multilinear_product() -> None:
    x, e = torch.tensor([[0.6, 0.8]]), torch.tensor([[0.8, 0.6]])
    text = PromptEmbeddings(["A"], torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2), torch.tensor([False]))
    got = prompt_scores([x, e], text, "symile", 2.0)
    assert got[0, 0] == pytest.approx(2.0 * 0.6 * 0.8 * 1.0)


def _embeddings(labels: dict[str, list[float]], vectors: dict[str, np.ndarray], loss: str = "convirt") -> Embeddings:
    n = len(next(iter(vectors.values())))
    return Embeddings(vectors, {m: np.ones(n, bool) for m in vectors},
                      np.array(list(labels.values()), np.float32).T.reshape(n, len(labels)), list(labels),
                      pd.DataFrame({"study_id": [str(i) for i in range(n)]}), loss, 10.0)


def test_label_column_prefers_the_modality_truth() -> None:
    emb = _embeddings({"Cardiomegaly": [1, 0], "cxr:Cardiomegaly": [1, 0], "Edema": [0, 1]},
                      {"cxr": np.eye(2, dtype=np.float32)})
    assert label_column(emb, "Cardiomegaly", ("cxr",)) == "cxr:Cardiomegaly"
    assert label_column(emb, "Edema", ("cxr",)) == "Edema"
    assert label_column(emb, "Cardiomegaly", ("cxr", "ecg")) == "Cardiomegaly"
    assert label_column(emb, "Pneumothorax", ("cxr",)) is None


def test_five_by_200_counts_single_positive_images_only() -> None:
    targets = np.array([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1],
                        [1, 1, 0, 0, 0], [0, 0, 0, 0, np.nan]], float)
    similarity = np.eye(7, 5)
    similarity[1] = [0.9, 0.1, 0, 0, 0]  # image 1 (Cardiomegaly) ranked as Atelectasis: a miss
    out = five_by_200(targets, similarity, min_per_class=1, reps=0)
    assert out["chexpert5x200/n"] == 5  # the two-label and the unlabelled images are left out
    assert out["chexpert5x200/top1"] == pytest.approx(4 / 5)
    assert five_by_200(targets, similarity, min_per_class=2, reps=0) == {}


class _StubTextModel:
    """``encode("report", texts)``: a fixed unit vector per known phrase."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    def encode(self, modality: str, texts: list[str]) -> torch.Tensor:
        assert modality == "report"
        return F.normalize(torch.tensor([self.table[t] for t in texts]), dim=-1)


def test_zero_shot_ranks_perfectly_separable_queries() -> None:
    model = _StubTextModel({"big heart": [1.0, 0.0], "normal heart": [0.0, 1.0], "fluid": [0.0, 1.0]})
    prompts = PromptSet("t", "cxr", {"Cardiomegaly": ClassPrompts(("big heart",), ("normal heart",)),
                                     "Pneumothorax": ClassPrompts(("fluid",))})
    angles = np.linspace(0.1, 1.4, 8)
    x = np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)  # closer to "big heart" first
    labels = {"Cardiomegaly": [1, 1, 1, 1, 0, 0, 0, np.nan]}
    result = zero_shot(model, _embeddings(labels, {"cxr": x}), prompts, reps=50)  # type: ignore[arg-type]
    assert result.metrics["auroc/Cardiomegaly"] == 1.0
    assert result.metrics["auroc_macro"] == 1.0
    assert result.metrics["n_pos/Cardiomegaly"] == 4 and result.metrics["n_neg/Cardiomegaly"] == 3
    assert result.metrics["skipped_labels"] == "Pneumothorax"
    assert result.scores.shape == (8, 1)


def test_embed_prompts_averages_an_ensemble() -> None:
    model = _StubTextModel({"a": [1.0, 0.0], "b": [0.0, 1.0]})
    text = embed_prompts(model, PromptSet("t", "cxr", {"A": ClassPrompts(("a", "b"))}))  # type: ignore[arg-type]
    np.testing.assert_allclose(text.positive.numpy(), [[2 ** -0.5, 2 ** -0.5]], rtol=1e-6)
    assert not bool(text.has_negative[0])
