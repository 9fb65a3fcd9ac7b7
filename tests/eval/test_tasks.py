"""``medclr eval`` / ``medclr embed`` end to end on a tiny trained run: every task writes its flat keys; an
``EvalSession`` shares one model load and one embedding per split across tasks, with the same metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from medclr.cli import main
from medclr.errors import MedclrError
from medclr.eval.embeddings import embed_manifest, load_embeddings
from medclr.eval.tasks import EvalRequest, EvalSession, evaluate, summary_table


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
    assert metrics["protocol_version"] == (2 if task == "grounding" else 1)  # what medclr demo compares to reuse it
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


# --- several tasks on one run: EvalSession ---------------------------------------------------------------------------

def _count_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Wrap ``load_model`` and ``embed_manifest`` (where the session looks them up) to record each call."""
    import medclr.eval.embeddings as embeddings
    import medclr.train.checkpoint as checkpoint

    calls: dict[str, list[Any]] = {"load_model": [], "embed": []}
    load, embed = checkpoint.load_model, embeddings.embed_manifest

    def counted_load(*args: Any, **kwargs: Any) -> Any:
        calls["load_model"].append(args)
        return load(*args, **kwargs)

    def counted_embed(*args: Any, **kwargs: Any) -> Any:
        calls["embed"].append(tuple(kwargs["splits"] or ()))
        return embed(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "load_model", counted_load)
    monkeypatch.setattr(embeddings, "embed_manifest", counted_embed)
    return calls


def test_a_session_loads_the_model_once_and_embeds_each_split_once(
        trained_run: Path, world_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_calls(monkeypatch)
    session = EvalSession(trained_run)
    for task in ("zeroshot-cxr", "zeroshot-ecg", "retrieval", "diagnostics", "probe"):
        metrics = evaluate(EvalRequest(trained_run, world_manifest, task, tmp_path / f"{task}.json", reps=5,
                                       plots=False, progress=False), session)
        assert metrics["task"] == task and metrics["splits"] == "test"
    assert len(calls["load_model"]) == 1
    assert calls["embed"] == [("test",), ("train",)]  # the probe's training split too, once


def test_evaluate_with_and_without_a_session_writes_the_same_metrics(
        trained_run: Path, world_manifest: Path, tmp_path: Path) -> None:
    session = EvalSession(trained_run)
    for task in ("zeroshot-cxr", "retrieval", "probe"):
        alone, shared = tmp_path / "alone" / f"{task}.json", tmp_path / "shared" / f"{task}.json"
        evaluate(EvalRequest(trained_run, world_manifest, task, alone, reps=20, progress=False))
        evaluate(EvalRequest(trained_run, world_manifest, task, shared, reps=20, progress=False), session)
        assert alone.read_bytes() == shared.read_bytes(), task
        assert sorted(p.name for p in alone.parent.glob(f"{task}_plots/*")) == \
            sorted(p.name for p in shared.parent.glob(f"{task}_plots/*"))


def test_embed_all_rows_takes_each_split_from_one_pass(trained_run: Path, world_manifest: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from medclr.train.checkpoint import load_model

    alone = embed_manifest(load_model(trained_run), trained_run, world_manifest, splits=["test"], progress=False)
    calls = _count_calls(monkeypatch)
    session = EvalSession(trained_run, embed_all_rows=True)
    test = session.embeddings(world_manifest, ["test"], progress=False)
    train = session.embeddings(world_manifest, ["train"], progress=False)
    whole = session.embeddings(world_manifest, progress=False)
    assert calls["embed"] == [()] and len(calls["load_model"]) == 1  # one pass over every row
    assert len(test) + len(train) < len(whole) and set(train.rows["split"]) == {"train"}
    # the same rows in the same order as embedding the split alone; the vectors up to float32 rounding
    pd.testing.assert_frame_equal(test.rows, alone.rows)
    np.testing.assert_array_equal(test.labels, alone.labels)
    assert test.label_names == alone.label_names and test.meta == alone.meta
    for m in alone.vectors:
        np.testing.assert_array_equal(test.present[m], alone.present[m])
        np.testing.assert_allclose(test.vectors[m], alone.vectors[m], atol=1e-5)


def test_a_session_refuses_another_run_or_checkpoint(trained_run: Path, world_manifest: Path, tmp_path: Path) -> None:
    session = EvalSession(trained_run, checkpoint="latest")
    with pytest.raises(MedclrError, match="the evaluation session holds run"):
        evaluate(EvalRequest(trained_run, world_manifest, "retrieval", progress=False), session)
    with pytest.raises(MedclrError, match="the evaluation session holds run"):
        evaluate(EvalRequest(tmp_path, world_manifest, "retrieval", checkpoint="latest", progress=False), session)


def test_retrieval_of_a_run_with_a_local_term_ranks_by_the_local_score_too(
        trained_run: Path, world_manifest: Path, tmp_path: Path) -> None:
    """The same weights, its config saying the run trained GLoRIA's local term: the retrieval task adds the
    ``_local`` keys, equal to :func:`local_retrieval_metrics` on the session's token grids of the same rows."""
    import shutil

    import torch
    import yaml

    from medclr.eval.retrieval import local_retrieval_metrics
    from medclr.losses.local import LocalAlignment

    run = tmp_path / "local_run"
    shutil.copytree(trained_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["loss"]["kwargs"] = {"local_weight": 1.0}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    session = EvalSession(run)
    metrics = evaluate(EvalRequest(run, world_manifest, "retrieval", reps=0, plots=False, progress=False), session)
    assert metrics["recall@10/report->cxr"] >= 0 and "recall@10/report->cxr_local" in metrics
    assert "GLoRIA" in metrics["retrieval_local"]
    assert metrics["n/report->cxr_local"] == metrics["n/report->cxr"]

    emb = session.embeddings(world_manifest, ["test"])
    grids = session.token_grids(world_manifest, ["test"], ["cxr", "report"])
    assert grids.study_ids == list(emb.rows["study_id"])
    cxr, report = grids.tokens["cxr"], grids.tokens["report"]  # [n, M, D], [n, L, D]
    assert not cxr[~torch.from_numpy(emb.present["cxr"])].any()  # studies without an X-ray: zero grids
    real = grids.mask["report"]
    torch.testing.assert_close(report[real].norm(dim=-1), torch.ones(int(real.sum())))  # unit where real
    groups = {"report": pd.factorize(emb.rows["report"].fillna(""))[0]}
    expected = local_retrieval_metrics(cxr, report, real, LocalAlignment(), rows=emb.present["cxr"] &
                                       emb.present["report"], groups=groups, reps=0)
    assert {k: metrics[k] for k in expected} == pytest.approx(expected, nan_ok=True)
    plain = evaluate(EvalRequest(trained_run, world_manifest, "retrieval", reps=0, plots=False, progress=False))
    assert not any(k.endswith("_local") for k in plain)  # a run without the local term has no local keys
