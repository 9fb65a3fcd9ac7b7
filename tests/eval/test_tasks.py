"""``medclr eval`` / ``medclr embed`` end to end on a tiny trained run: every task writes its flat keys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medclr.cli import main
from medclr.eval.embeddings import load_embeddings
from medclr.eval.tasks import summary_table


@pytest.mark.parametrize(("task", "keys"), [
    ("zeroshot-cxr", ["auroc_macro", "auroc/Cardiomegaly", "column/Cardiomegaly", "prompts"]),
    ("zeroshot-ecg", ["auroc_macro", "auroc/NORM", "auroc_macro/superclass"]),
    ("zeroshot-joint", ["auroc/Heart Failure", "column/Heart Failure"]),
    ("retrieval", ["recall@10/report->cxr", "recall@1/cxr+ecg->report", "mrr/cxr->ecg", "median_rank/ecg->report"]),
    ("diagnostics", ["gap/cxr-report", "uniformity/ecg", "effective_rank/report"]),
    ("probe", ["probe/cxr/100%/n_train"]),
])
def test_every_task_writes_flat_metrics(trained_run: Path, world_manifest: Path, tmp_path: Path, task: str,
                                        keys: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"{task}.json"
    code = main(["eval", str(trained_run), "--task", task, "--manifest", str(world_manifest), "--out", str(out),
                 "--bootstrap", "20", "--split", "train,val,test"])
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics["task"] == task and metrics["objective"] == "convirt" and metrics["splits"] == "train,val,test"
    for key in keys:
        assert key in metrics, f"{key} missing from {sorted(metrics)[:20]}"
    assert all(isinstance(v, str | int | float) for v in metrics.values())  # flat
    assert f"metrics: {out}" in capsys.readouterr().out


def test_zero_shot_writes_a_roc_plot(trained_run: Path, world_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "zs.json"
    assert main(["eval", str(trained_run), "--task", "zeroshot-cxr", "--manifest", str(world_manifest), "--out",
                 str(out), "--bootstrap", "0", "--split", "train,val,test"]) == 0
    png = tmp_path / "zs_plots" / "roc.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_embed_round_trips_through_parquet(trained_run: Path, world_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "emb.parquet"
    assert main(["embed", str(trained_run), "--manifest", str(world_manifest), "--out", str(out)]) == 0
    emb = load_embeddings(out)
    assert emb.loss == "convirt" and set(emb.modalities) == {"cxr", "ecg", "report"}
    for m in emb.modalities:
        rows = emb.vectors[m][emb.present[m]]
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)  # unit vectors
        assert not emb.vectors[m][~emb.present[m]].any()
    assert emb.rows["study_id"].notna().all() and emb.labels.shape == (len(emb), len(emb.label_names))


def test_embed_then_index_then_search_finds_the_study_itself(trained_run: Path, world_manifest: Path,
                                                             tmp_path: Path) -> None:
    from medclr.index import load_index

    emb, folder = tmp_path / "emb.parquet", tmp_path / "index"
    assert main(["embed", str(trained_run), "--manifest", str(world_manifest), "--out", str(emb)]) == 0
    assert main(["index", str(emb), "--out", str(folder)]) == 0
    index = load_index(folder)
    row = next(i for i in range(len(index.ids)) if i in set(index.positions["cxr"]))
    hit = index.search(index.query_of(row, ["cxr"]), "cxr", k=1)[0]
    assert hit.ids[0] == index.ids[row]  # an X-ray's nearest X-ray is itself


def test_bad_inputs_are_one_line_errors(trained_run: Path, world_manifest: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    args = ["eval", str(trained_run), "--task", "retrieval", "--out", str(tmp_path / "m.json")]
    assert main([*args, "--manifest", str(tmp_path / "missing.parquet")]) == 2
    assert "manifest not found" in capsys.readouterr().err
    assert main([*args, "--manifest", str(world_manifest), "--split", "nope"]) == 2
    assert "split" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--task", "retrieval", "--manifest", str(world_manifest)]) == 2
    assert "not a medclr run directory" in capsys.readouterr().err


def test_summary_table_shows_cis_and_skips_ci_keys() -> None:
    table = summary_table({"auroc_macro": 0.9, "auroc_macro_ci_low": 0.8, "auroc_macro_ci_high": 0.95,
                           "n_rows": 10.0, "auroc/Edema": float("nan")})
    assert "auroc_macro  0.900  [0.800, 0.950]" in table and "ci_low" not in table and "n_rows" not in table
