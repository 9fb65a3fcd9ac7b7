"""Linear probe and embedding-space diagnostics against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medclr.eval.diagnostics import diagnostics, effective_rank
from medclr.eval.embeddings import Embeddings
from medclr.eval.probe import linear_probe, stratified_subset


def _emb(x: np.ndarray, y: np.ndarray, modality: str = "cxr") -> Embeddings:
    n = len(x)
    return Embeddings({modality: x.astype(np.float32)}, {modality: np.ones(n, bool)},
                      y.reshape(n, 1).astype(np.float32), ["Edema"],
                      pd.DataFrame({"study_id": [str(i) for i in range(n)]}), "convirt", 10.0)


def test_stratified_subset_keeps_each_class() -> None:
    y = np.array([0] * 90 + [1] * 10)
    rows = stratified_subset(y, 0.1, seed=0)
    assert rows is not None and (y[rows] == 0).sum() == 9 and (y[rows] == 1).sum() == 2  # at least 2 per class
    assert stratified_subset(np.array([0, 0, 0, 1]), 0.5, seed=0) is None  # one positive only


def test_linear_probe_separates_a_linear_label() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8))
    y = (x[:, 0] > 0).astype(float)
    out = linear_probe(_emb(x[:300], y[:300]), _emb(x[300:], y[300:]), {"cxr": ["Edema"]}, reps=50)
    assert out["probe/cxr/100%/auroc/Edema"] > 0.97
    assert out["probe/cxr/100%/n_train"] == 300
    assert out["probe/cxr/1%/n_train"] == 4  # 2 per class
    assert "probe/cxr/10%/auroc_macro_ci_low" in out


def test_effective_rank_of_known_spectra() -> None:
    square = np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]])  # two equal singular values
    assert effective_rank(square) == pytest.approx(2.0)
    line = np.array([[1.0, 0], [2, 0], [3, 0]])
    assert effective_rank(line) == pytest.approx(1.0)


def test_gap_and_alignment_of_two_fixed_cones() -> None:
    n = 6
    emb = Embeddings({"cxr": np.tile([1.0, 0.0], (n, 1)).astype(np.float32),
                      "report": np.tile([0.0, 1.0], (n, 1)).astype(np.float32)},
                     {"cxr": np.ones(n, bool), "report": np.ones(n, bool)}, np.zeros((n, 0), np.float32), [],
                     pd.DataFrame({"study_id": list("abcdef")}), "convirt", 10.0)
    out = diagnostics(emb)
    assert out["gap/cxr-report"] == pytest.approx(2 ** 0.5)
    assert out["alignment/cxr-report"] == pytest.approx(2.0)
    assert out["uniformity/cxr"] == pytest.approx(0.0, abs=1e-6)  # collapsed onto one point


def test_learning_curves_read_val_logs_and_plot(tmp_path: Path) -> None:
    import json

    from medclr.eval.curves import main

    for name, values in {"a": [0.5, 0.7], "b": [0.5, 0.52]}.items():
        (tmp_path / name).mkdir()
        lines = [json.dumps({"step": 10 * (i + 1), "val/x": v}) for i, v in enumerate(values)]
        (tmp_path / name / "val.jsonl").write_text("\n".join([*lines, json.dumps({"step": 30})]) + "\n")
    out = tmp_path / "c.png"
    assert main([f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}", "--metric", "val/x", "--out", str(out),
                 "--chance", "0.5"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
