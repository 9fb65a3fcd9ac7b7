"""``medclr demo``: the reuse logic and the results table (fast, on a faked demo folder), and the tiny preset end to
end twice (``slow``): the second run reuses every stage."""

from __future__ import annotations

import importlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

import medclr.demo as demo
from medclr.cli import EXIT_USER_ERROR, main
from medclr.config import load_config
from medclr.demo import DemoOptions, DemoPaths, run_demo
from medclr.eval.tasks import protocol_version

EXPECTED_STAGES = ["world", "prepare", "prepare-ms", "train", *[f"eval:{t}" for t in demo.EVAL_TASKS], "embed",
                   "index", "report"]


def _metrics(task: str) -> dict[str, Any]:
    """A metrics file as `medclr eval` writes it (header + flat keys with CIs), small but shaped like the real one."""
    header = {"task": task, "protocol_version": protocol_version(task), "splits": "test",
              "split_protocol": "split 'test' (200 rows)", "checkpoint": "best",
              "objective": "convirt", "label_policy": "ground truth of the synthetic world (truth.csv)"}
    values: dict[str, Any] = {
        "zeroshot-cxr": {"auroc/Cardiomegaly": 0.91, "auroc/Cardiomegaly_ci_low": 0.85,
                         "auroc/Cardiomegaly_ci_high": 0.95, "n_pos/Cardiomegaly": 40, "n_neg/Cardiomegaly": 160,
                         "auroc_macro": 0.8, "auroc_macro/superclass": 0.8, "column/Cardiomegaly": "cxr:Cardiomegaly"},
        "zeroshot-ecg": {"auroc/CD": 0.7, "n_pos/CD": 30, "n_neg/CD": 170, "auroc_macro": 0.7},
        "zeroshot-joint": {"auroc/Heart Failure": 0.75, "n_pos/Heart Failure": 20, "n_neg/Heart Failure": 180},
        "retrieval": {"recall@1/report->cxr": 0.1, "recall@5/report->cxr": 0.3, "recall@10/report->cxr": 0.4,
                      "recall@10/report->cxr_label_ceiling": 0.48, "recall@10/ecg+report->cxr_label_ceiling": 0.48,
                      "recall@10/report->cxr_ci_low": 0.35, "recall@10/report->cxr_ci_high": 0.45,
                      "n/report->cxr": 200, "mrr/report->cxr": 0.2, "recall@10/cxr+ecg->report": 0.5,
                      "n/cxr+ecg->report": 200, "retrieval_protocol": "chance recall@K = K/n",
                      "recall@10/report->cxr_local": 0.45, "n/report->cxr_local": 200,
                      "recall@10/report->cxr_local_label_ceiling": 0.48, "recall@1/report->cxr_local": 0.1},
        "grounding": {"cnr": 0.5, "miou/biovil": 0.1, "pointing_game": 0.4, "pointing_game_chance": 0.2,
                      "pointing_game_reachable": 0.85,
                      "cnr/Edema": 0.4, "n_phrases": 12, "n_phrases_other": 3, "all_categories/pointing_game": 0.35,
                      "ecg/pointing_game_lead": 0.5, "ecg/n": 8,
                      "grounding_protocol": "pointing game = map maximum inside a box"},
    }[task]
    return {**header, **values}


def fake_finished_demo(out: Path, *, steps: int, preset: str = "tiny") -> DemoPaths:
    """The files a finished demo leaves behind (no real data): each stage finds its output and reuses it."""
    paths = DemoPaths(out)
    paths.world.mkdir(parents=True)
    (paths.world / "world.json").write_text(json.dumps({"preset": preset, "seed": 0, "patients": 40}))
    paths.paired.write_bytes(b"")
    paths.ms.write_bytes(b"")
    _age(paths.paired, paths.ms, seconds=200)
    step = paths.run / "checkpoints" / f"step_{steps:06d}"
    step.mkdir(parents=True)
    (step / "checkpoint.json").write_text(json.dumps({"step": steps}))
    (paths.run / "config.yaml").write_text("{}\n")
    for pointer in ("latest", "best"):
        (paths.run / "checkpoints" / pointer).write_text(step.name)
    _age(*(paths.run / "checkpoints").iterdir())
    paths.eval_dir.mkdir()
    for task in demo.EVAL_TASKS:
        paths.metrics(task).write_text(json.dumps(_metrics(task)))
        plots = paths.eval_dir / f"{task}_plots"
        plots.mkdir()
        (plots / "roc.png").write_bytes(b"png")
    _age(*paths.eval_dir.glob("*.json"), seconds=50)
    paths.embeddings.write_bytes(b"")
    _age(paths.embeddings, seconds=50)
    paths.index.mkdir()
    (paths.index / "index.json").write_text("{}")
    return paths


def _age(*files: Path, seconds: float = 100) -> None:
    for f in files:
        then = time.time() - seconds
        os.utime(f, (then, then))


def _forbid(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every expensive stage record its call instead of running."""
    calls: list[str] = []

    def record(name: str, result: Any = None) -> Any:
        def stub(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            if name == "train":
                calls.append(f"resume={kwargs.get('resume')}")
            return result(*args) if callable(result) else result
        return stub

    stubs = {"medclr.synth.world": {"generate_world": record("world")},
             "medclr.data.prepare": {"prepare": record("prepare")},
             "medclr.train": {"train": record("train", _FakeTrainResult)},
             "medclr.eval.tasks": {"evaluate": record("evaluate", lambda request: _metrics(request.task))},
             "medclr.train.checkpoint": {"load_model": record("load_model")},
             "medclr.eval.embeddings": {"embed_manifest": record("embed", [0, 1, 2]),
                                        "save_embeddings": record("save_embeddings")},
             "medclr.index": {"build_index": record("index")}}
    for module, names in stubs.items():
        for name, stub in names.items():  # the module itself (a package may re-export a function of its name)
            monkeypatch.setattr(importlib.import_module(module), name, stub)
    return calls


class _FakeTrainResult:
    def __init__(self, *_: Any) -> None:
        self.steps, self.last_loss = 30, 1.0


def test_a_finished_demo_is_reused_stage_by_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_finished_demo(tmp_path, steps=30)  # tiny.yaml: run.max_steps 30
    calls = _forbid(monkeypatch)
    lines: list[str] = []
    result = run_demo(DemoOptions(out=tmp_path, preset="tiny", progress=False), say=lines.append)
    assert calls == []
    assert [s.name for s in result.stages] == EXPECTED_STAGES
    assert {s.status for s in result.stages[:-1]} == {"reused"} and result.status("report") == "built"
    text = "\n".join(lines)
    assert "recall@10/report->cxr" in text and "0.400 [0.350, 0.450]" in text and "timings" in text
    assert text.rstrip().endswith(f"medclr app --run {tmp_path / 'run'} --index {tmp_path / 'index'}")
    report = result.report.read_text()
    assert "| zeroshot-cxr | `auroc/Cardiomegaly` | 0.910 [0.850, 0.950] | 40+ / 160- |" in report
    assert "pointing game = map maximum inside a box" in report and "(eval/grounding_plots/roc.png)" in report
    assert report.startswith("# medclr demo: the `tiny` world\n")


def test_the_report_names_a_world_with_incidental_findings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_finished_demo(tmp_path, steps=30)
    about = tmp_path / "world" / "world.json"
    about.write_text(json.dumps({**json.loads(about.read_text()), "incidental": True}))
    _forbid(monkeypatch)
    result = run_demo(DemoOptions(out=tmp_path, preset="tiny", progress=False), say=lambda _: None)
    assert result.report.read_text().startswith(
        "# medclr demo: the `tiny` world with incidental findings (`medclr synth --incidental`)\n")


def test_a_partial_run_is_resumed_and_stale_metrics_are_recomputed(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    paths = fake_finished_demo(tmp_path, steps=10)  # tiny.yaml trains 30 steps
    calls = _forbid(monkeypatch)

    def finish(*_: Any, **__: Any) -> _FakeTrainResult:  # training moves the checkpoint pointers on
        calls.append("train")
        (paths.run / "checkpoints" / "latest").write_text("step_000010")
        return _FakeTrainResult()

    monkeypatch.setattr(importlib.import_module("medclr.train"), "train", finish)
    result = run_demo(DemoOptions(out=tmp_path, preset="tiny", progress=False), say=lambda _: None)
    assert result.status("train") == "resumed"
    assert [s.status for s in result.stages if s.name.startswith("eval:")] == ["built"] * len(demo.EVAL_TASKS)
    assert result.status("embed") == "built" and result.status("world") == "reused"
    assert calls == ["train", *["evaluate"] * len(demo.EVAL_TASKS), "load_model", "embed", "save_embeddings"]


def test_metrics_of_an_older_protocol_are_recomputed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A grounding file from before the MS-CXR protocol (version 1: no stamp) and an unreadable file are evaluated
    again; the other up-to-date files are reused."""
    paths = fake_finished_demo(tmp_path, steps=30)
    old = {k: v for k, v in _metrics("grounding").items() if k != "protocol_version"}
    paths.metrics("grounding").write_text(json.dumps(old))
    paths.metrics("retrieval").write_text("{not json")
    calls = _forbid(monkeypatch)
    result = run_demo(DemoOptions(out=tmp_path, preset="tiny", progress=False), say=lambda _: None)
    evals = {s.name: s.status for s in result.stages if s.name.startswith("eval:")}
    assert evals.pop("eval:grounding") == evals.pop("eval:retrieval") == "built"
    assert set(evals.values()) == {"reused"} and calls.count("evaluate") == 2


def _three_rows(*_: Any) -> Any:
    """Embeddings of three studies, one per split (what the stubbed ``embed_manifest`` returns)."""
    import numpy as np
    import pandas as pd

    from medclr.eval.embeddings import Embeddings

    rows = pd.DataFrame({"study_id": ["a", "b", "c"], "split": ["train", "test", "val"]})
    return Embeddings({"cxr": np.zeros((3, 2), np.float32)}, {"cxr": np.ones(3, bool)}, np.zeros((3, 0), np.float32),
                      [], rows, "convirt", 1.0)


def test_the_eval_and_embed_stages_share_one_model_and_one_pass(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    paths = fake_finished_demo(tmp_path, steps=30)
    (paths.run / "checkpoints" / "latest").touch()  # a newer checkpoint: the metrics and the embeddings are stale
    calls = _forbid(monkeypatch)
    model = object()
    monkeypatch.setattr(importlib.import_module("medclr.train.checkpoint"), "load_model",
                        lambda *_, **__: calls.append("load_model") or model)
    monkeypatch.setattr(importlib.import_module("medclr.eval.embeddings"), "embed_manifest",
                        lambda *args, **__: calls.append("embed") or _three_rows(*args))
    sessions: list[Any] = []

    def evaluate(request: Any, session: Any) -> dict[str, Any]:  # what the tasks ask of the session
        sessions.append(session)
        assert session.model is model
        if request.task != "grounding":
            assert len(session.embeddings(request.manifest, ["test"], progress=False)) == 1
        return _metrics(request.task)

    monkeypatch.setattr(importlib.import_module("medclr.eval.tasks"), "evaluate", evaluate)
    result = run_demo(DemoOptions(out=tmp_path, preset="tiny", progress=False), say=lambda _: None)
    assert len(sessions) == len(demo.EVAL_TASKS) and len({id(s) for s in sessions}) == 1
    assert sessions[0].embed_all_rows  # the embeddings file is stale too: one pass over every row serves both
    assert calls == ["load_model", "embed", "save_embeddings"]  # the stage saves what the first eval embedded
    assert next(s.detail for s in result.stages if s.name == "embed") == "3 studies"


def test_steps_up_to_the_finished_checkpoint_reuse_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_finished_demo(tmp_path, steps=10)
    calls = _forbid(monkeypatch)
    result = run_demo(DemoOptions(out=tmp_path, preset="tiny", steps=10, progress=False), say=lambda _: None)
    assert result.status("train") == "reused" and calls == []


def test_recipe_overrides_reach_training_and_owned_keys_are_refused(tmp_path: Path) -> None:
    paths = DemoPaths(tmp_path)
    options = DemoOptions(out=tmp_path, steps=7, overrides=("optim.tower_lr={cxr: 4}", "loss.kwargs={lam: 0.5}"))
    overrides = demo.train_overrides(paths, options)
    assert overrides[-3:] == ["run.max_steps=7", "optim.tower_lr={cxr: 4}", "loss.kwargs={lam: 0.5}"]
    cfg = load_config(demo.REPO_ROOT / "configs" / "train" / "tiny.yaml", overrides)
    assert cfg.optim.tower_lr == {"cxr": 4} and cfg.loss.kwargs == {"lam": 0.5} and cfg.run.max_steps == 7
    with pytest.raises(demo.MedclrInputError, match=r"run\.out_dir"):
        demo.train_overrides(paths, DemoOptions(out=tmp_path, overrides=("run.out_dir=elsewhere",)))
    assert main(["demo", "--out", str(tmp_path / "o"), "--set", "data.manifest=x.parquet"]) == EXIT_USER_ERROR
    assert not (tmp_path / "o").exists()  # refused before any stage ran


def test_a_world_of_another_preset_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_finished_demo(tmp_path, steps=30, preset="demo")
    _forbid(monkeypatch)
    with pytest.raises(demo.MedclrInputError, match="holds the demo world"):
        run_demo(DemoOptions(out=tmp_path, preset="tiny", progress=False), say=lambda _: None)


def test_skip_train_without_a_run_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "--preset", "tiny", "--skip-train"]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--skip-train" in err and "Fix:" in err
    assert not (tmp_path / "world").exists()


def test_card_baselines_are_read_from_the_synth_card() -> None:
    base = demo.card_baselines()
    # data_cards/synth.md, "Simple baselines": Cardiomegaly 0.969 (X-ray), ECG CD 0.911, joint Heart Failure 0.949
    assert base[("zeroshot-cxr", "auroc/Cardiomegaly")][0] == pytest.approx(0.969)
    assert base[("zeroshot-ecg", "auroc/CD")][0] == pytest.approx(0.911)
    joint = base[("zeroshot-joint", "auroc/Heart Failure")]
    assert joint == (pytest.approx(0.949), "LR on 32x32 pixels + ECG features")
    assert len(base) >= 16  # 10 X-ray findings, 5 ECG superclasses, 1 joint label
    # "Grounding: where does a CNN trained with labels point?": its CAM's pointing game, overall and per finding
    # (the headline over MS-CXR's eight findings; every phrase, support devices too, under all_categories/)
    assert base[("grounding", "pointing_game")] == (pytest.approx(0.345), "supervised CNN's CAM, other X-rays")
    assert base[("grounding", "all_categories/pointing_game")][0] == pytest.approx(0.327)
    assert base[("grounding", "pointing_game/Cardiomegaly")][0] == pytest.approx(0.481)
    assert base[("grounding", "pointing_game@15px")][0] == pytest.approx(0.469)  # Zhang et al.'s 15 px tolerance
    assert base[("grounding", "all_categories/pointing_game@15px")][0] == pytest.approx(0.443)


def test_card_pointing_rows_map_to_their_metric(tmp_path: Path) -> None:
    card = tmp_path / "card.md"
    rows = ["| pointing game: MS-CXR findings | 8 | 0.35 |", "| pointing game: all phrases | 9 | 0.30 |",
            "| pointing game@15px: all phrases | 9 | 0.45 |", "| pointing game@15px: Edema | 3 | 0.67 |",
            "| pointing gamer: Edema | 3 | 0.99 |"]
    card.write_text("\n".join(["## Simple baselines", "| phrases | n | CAM |", "|---|---|---|", *rows, "", "## Next"]))
    base = demo.card_baselines(card)
    assert {k: v[0] for k, v in base.items()} == {("grounding", "pointing_game"): 0.35,
                                                  ("grounding", "all_categories/pointing_game"): 0.30,
                                                  ("grounding", "all_categories/pointing_game@15px"): 0.45,
                                                  ("grounding", "pointing_game@15px/Edema"): 0.67}


def test_results_table_rows_baselines_and_chance() -> None:
    metrics = {t: _metrics(t) for t in demo.EVAL_TASKS}
    rows = demo.results_rows(metrics, demo.card_baselines())
    by_key = {(r.task, r.metric): r for r in rows}
    assert ("zeroshot-cxr", "auroc_macro/superclass") not in by_key and ("grounding", "cnr/Edema") not in by_key
    assert ("retrieval", "recall@10/ecg+report->cxr_label_ceiling") not in by_key  # a note, not a row
    assert ("retrieval", "recall@5/report->cxr") not in by_key and ("retrieval", "mrr/report->cxr") not in by_key
    assert by_key[("zeroshot-cxr", "auroc/Cardiomegaly")].baseline == pytest.approx(0.969)
    assert by_key[("zeroshot-cxr", "auroc/Cardiomegaly")].ci == (0.85, 0.95)
    assert by_key[("retrieval", "recall@10/report->cxr")].baseline == pytest.approx(10 / 200)
    assert by_key[("retrieval", "recall@10/report->cxr")].baseline_note == "chance K/n; label ceiling 0.480"
    local = by_key[("retrieval", "recall@10/report->cxr_local")]  # GLoRIA's local score: a row, with its notes
    assert local.value == 0.45 and local.baseline_note == "chance K/n; label ceiling 0.480"
    assert ("retrieval", "recall@1/report->cxr_local") not in by_key
    assert by_key[("retrieval", "recall@10/cxr+ecg->report")].n == "200"
    assert by_key[("grounding", "pointing_game")].baseline == pytest.approx(0.345)  # the card's CAM, then chance
    assert by_key[("grounding", "pointing_game")].baseline_note == ("supervised CNN's CAM, other X-rays; chance 0.200; "
                                                                    "grid ceiling 0.850")
    every = by_key[("grounding", "all_categories/pointing_game")]  # every phrase, MS-CXR's findings and the others
    assert (every.value, every.n, every.baseline) == (0.35, "15", pytest.approx(0.327))
    assert by_key[("grounding", "ecg/pointing_game_lead")].baseline is None  # no chance stated, no card row
    plain = {(r.task, r.metric): r for r in demo.results_rows(metrics, {})}[("grounding", "pointing_game")]
    assert (plain.baseline, plain.baseline_note) == (pytest.approx(0.2), "chance; grid ceiling 0.850")
    table = demo.render_table(rows).splitlines()
    assert table[0].split() == ["task", "metric", "value", "[95%", "CI]", "n", "baseline"]
    assert len(table) == len(rows) + 2


@pytest.mark.slow
def test_tiny_demo_end_to_end_then_reused(tmp_path: Path) -> None:
    options = DemoOptions(out=tmp_path / "demo", preset="tiny", steps=4, bootstrap=50, workers=1, progress=False)
    first = run_demo(options, say=lambda _: None)
    assert [s.name for s in first.stages] == EXPECTED_STAGES
    assert not first.failed, first.failed
    assert all(s.status == "built" for s in first.stages)
    for task in demo.EVAL_TASKS:
        assert json.loads((tmp_path / "demo" / "eval" / f"{task}.json").read_text())["task"] == task
    assert (tmp_path / "demo" / "index" / "index.json").is_file()
    report = first.report.read_text()
    assert "| task | metric | value [95% CI] | n | baseline |" in report and "recall@10/report->cxr" in report
    assert "eval/zeroshot-cxr_plots/roc.png" in report and "grounding_cxr" in report and "retrieval_report" in report

    second = run_demo(options, say=lambda _: None)
    assert [s.status for s in second.stages] == ["reused"] * (len(EXPECTED_STAGES) - 1) + ["built"]
    assert [(r.metric, r.value_text()) for r in second.rows] == [(r.metric, r.value_text()) for r in first.rows]
