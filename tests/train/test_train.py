"""End-to-end training on the tiny world: every loss, the run directory, load_model, determinism, NaN guard."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import Tensor

import medclr
from medclr.config import TrainConfig
from medclr.losses import LOSSES, MultimodalLoss
from medclr.models.config import MedclrConfigError
from medclr.train import MedclrTrainingError, loop, train
from medclr.train.checkpoint import latest_checkpoint
from medclr.train.loop import cpu_has_native_bf16, resolve_amp
from tests.train.conftest import WorldFactory


def _metrics(run_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("loss", ["convirt", "symile", "gram"])
def test_each_loss_trains_and_writes_a_self_describing_run(make_config: WorldFactory, loss: str) -> None:
    extra = ["model.logit_scale.init=16", "model.logit_scale.max=1000"] if loss == "symile" else []
    cfg = make_config(f"loss.name={loss}", "run.val_every=4", *extra)
    result = train(cfg)
    run = result.run_dir
    records = _metrics(run)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(isinstance(r["loss"], float) and r["loss"] > 0 for r in records)
    assert {"lr", "samples_per_s", "grad_norm"} <= set(records[0])
    for name in ("config.yaml", "model.yaml", "preprocessing.json", "model_card.md", "val.jsonl"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_000004"
    assert "data_cards/synth.md" in (run / "model_card.md").read_text()
    val = json.loads((run / "val.jsonl").read_text().splitlines()[-1])
    assert "val/r1_mean" in val
    _assert_selected_on_every_zero_shot_label(val, result.best)


def _assert_selected_on_every_zero_shot_label(val: Mapping[str, object], best: Mapping[str, object] | None) -> None:
    """The best checkpoint is picked on the mean over every (modality, label) zero-shot AUROC, not over modalities
    (one noisy label of its own must not weigh as much as five)."""
    per_label = {k: float(v) for k, v in val.items() if k.startswith("val/zeroshot_auroc/") and k.count("/") == 3
                 and isinstance(v, float)}
    modalities = {k.split("/")[2] for k in per_label}
    assert modalities == {"cxr", "ecg"}  # the tiny world: 1 X-ray label, 4 ECG labels
    for m in modalities:
        labels = [v for k, v in per_label.items() if k.split("/")[2] == m]
        assert val[f"val/zeroshot_auroc/{m}"] == pytest.approx(sum(labels) / len(labels))
    assert val["val/zeroshot_auroc_label_mean"] == pytest.approx(sum(per_label.values()) / len(per_label))
    assert best is not None and best["metric"] == "val/zeroshot_auroc_label_mean"
    assert best["value"] == pytest.approx(val["val/zeroshot_auroc_label_mean"])


def test_load_model_round_trip_gives_identical_embeddings(make_config: WorldFactory) -> None:
    result = train(make_config("run.max_steps=2"))
    assert result.model is not None
    trained = result.model.eval()
    loaded = medclr.load_model(result.run_dir, checkpoint="latest")
    texts = ["Sinus rhythm.", "Mild cardiomegaly. Small effusion."]
    images, ecgs = torch.rand(2, 1, 32, 32), torch.randn(2, 12, 500)
    with torch.no_grad():
        for modality, x in (("cxr", images), ("ecg", ecgs), ("report", texts)):
            assert torch.equal(trained.encode(modality, x), loaded.encode(modality, x)), modality


def test_frozen_text_base_is_not_saved_but_lora_adapters_are(make_config: WorldFactory) -> None:
    result = train(make_config("run.max_steps=2"))
    folder = latest_checkpoint(result.run_dir)
    assert folder is not None
    keys = set(load_file(str(folder / "model.safetensors")))
    base = [k for k in keys if k.startswith("towers.report.encoder.model.") and "lora_" not in k]
    assert not base, base[:3]
    assert any("lora_A" in k for k in keys)
    assert (folder / "lora" / "report" / "adapter_config.json").is_file()


def test_two_runs_with_one_seed_end_with_identical_weights(make_config: WorldFactory, tmp_path: Path) -> None:
    a = train(make_config("run.max_steps=3", f"run.out_dir={tmp_path / 'a'}", "optim.grad_accum=2"))
    b = train(make_config("run.max_steps=3", f"run.out_dir={tmp_path / 'b'}", "optim.grad_accum=2"))
    wa = load_file(str(a.run_dir / "checkpoints" / "step_000003" / "model.safetensors"))
    wb = load_file(str(b.run_dir / "checkpoints" / "step_000003" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_bf16_autocast_trains_on_cpu_and_fp16_is_refused(make_config: WorldFactory, tmp_path: Path) -> None:
    """run.amp=bf16 runs the CPU forward in bfloat16 (the losses move a little, as they must) and trains; fp16,
    whose loss scaling is CUDA's, is a config error on CPU."""
    full = _metrics(train(make_config("run.max_steps=3", f"run.out_dir={tmp_path / 'fp32'}")).run_dir)
    half = _metrics(train(make_config("run.max_steps=3", f"run.out_dir={tmp_path / 'bf16'}", "run.amp=bf16")).run_dir)
    for a, b in zip(full, half, strict=True):
        assert math.isfinite(b["loss"]) and b["loss"] != a["loss"]
        assert b["loss"] == pytest.approx(a["loss"], rel=0.05)
    with pytest.raises(MedclrConfigError, match="fp16 needs a CUDA device"):
        train(make_config("run.max_steps=1", f"run.out_dir={tmp_path / 'fp16'}", "run.amp=fp16"))


@pytest.mark.parametrize("loss", ["symile", "gram"])
def test_higher_order_losses_run_in_fp32_under_bf16_autocast(make_config: WorldFactory, tmp_path: Path,
                                                               loss: str) -> None:
    """Only the towers run in bf16: Symile's shuffled logits once mixed bf16 products with fp32 positives and
    crashed; GRAM's Gram determinants would lose their meaning."""
    extra = ["model.logit_scale.init=16", "model.logit_scale.max=1000"] if loss == "symile" else []
    records = _metrics(train(make_config("run.max_steps=2", f"run.out_dir={tmp_path / loss}", "run.amp=bf16",
                                         f"loss.name={loss}", *extra)).run_dir)
    assert all(math.isfinite(r["loss"]) for r in records)


@pytest.mark.parametrize(("flags", "native"), [("fpu sse2 avx2 avx512f avx512_bf16", True),
                                               ("fpu sse2 amx_tile amx_bf16", True), ("fpu sse2 avx2 avx512f", False)])
def test_amp_auto_is_bf16_only_where_the_cpu_computes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         flags: str, native: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert cpu_has_native_bf16(cpuinfo) is native
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: native)
    assert resolve_amp("auto", torch.device("cpu")) == ("bf16" if native else "none")
    assert resolve_amp("bf16", torch.device("cpu")) == "bf16" and resolve_amp("none", torch.device("cpu")) == "none"
    assert cpu_has_native_bf16(tmp_path / "missing") is False  # not Linux: no bf16 claimed


class _NanLoss(MultimodalLoss):
    """A loss that is NaN but still depends on the embeddings (so backward runs)."""

    def forward(self, emb: Mapping[str, Tensor], logit_scale: Tensor | float, present: object = None,
                groups: object = None) -> dict[str, Tensor]:
        return {"loss": sum(x.sum() for x in emb.values()) * float("nan")}  # type: ignore[dict-item]


def test_repeated_non_finite_losses_abort_with_a_clear_error(make_config: WorldFactory) -> None:
    if "test_nan" not in LOSSES:
        LOSSES.register("test_nan")(_NanLoss)
    cfg: TrainConfig = make_config("loss.name=test_nan", "run.max_nonfinite_steps=2", "run.max_steps=5")
    with pytest.raises(MedclrTrainingError, match="non-finite for 2 steps in a row"):
        train(cfg)
    records = _metrics(Path(cfg.run.out_dir))
    assert records[0]["skipped"] == 1 and records[0]["loss"] is None


def test_an_existing_run_dir_needs_resume(make_config: WorldFactory) -> None:
    cfg = make_config("run.max_steps=1")
    train(cfg)
    with pytest.raises(medclr.MedclrError, match="--resume"):
        train(cfg)


def test_keep_last_prunes_old_checkpoints_but_never_the_best(make_config: WorldFactory) -> None:
    result = train(make_config("run.max_steps=6", "run.ckpt_every=1", "run.keep_last=2", "run.val_every=2",
                               "run.best_metric=val/r1_mean"))
    folders = sorted(p.name for p in (result.run_dir / "checkpoints").glob("step_*"))
    assert result.best is not None
    best = result.best["checkpoint"]
    assert set(folders) == {"step_000005", "step_000006", best}
    assert (result.run_dir / "checkpoints" / "best").read_text().strip() == best
    loaded = medclr.load_model(result.run_dir)  # best by default
    weights = load_file(str(result.run_dir / "checkpoints" / best / "model.safetensors"))
    assert torch.equal(loaded.state_dict()["scale.log_scale"], weights["scale.log_scale"])


def test_prefix_cache_trains_like_the_full_text_tower(make_config: WorldFactory, dropout_free_bert: Path,
                                                      tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """LoRA on the tiny BERT's top block; without dropout, a run whose frozen block 0 is cached (from the second
    epoch on, every report a hit) takes the same steps as the run that recomputes it."""
    common = [f"model.towers.report.encoder.model={dropout_free_bert}", "model.towers.report.encoder.lora.layers=[1]",
              "run.max_steps=10", "optim.schedule=constant", "data.augment.report_sentence_keep=1.0"]
    plain = train(make_config(*common, f"run.out_dir={tmp_path / 'plain'}"))
    with caplog.at_level(logging.WARNING, logger="medclr.train.loop"):
        cached = train(make_config(*common, "model.towers.report.encoder.prefix_cache=256",
                                   f"run.out_dir={tmp_path / 'cached'}"))
    assert "rarely hit" not in caplog.text
    records = _metrics(cached.run_dir)
    assert int(records[-1]["epoch"]) >= 1 and float(records[-1]["prefix_cache_hit_rate/report"]) > 0.3
    assert "prefix_cache_hit_rate/report" not in _metrics(plain.run_dir)[-1]
    losses = [[float(r["loss"]) for r in _metrics(run.run_dir)] for run in (plain, cached)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4, abs=1e-5)


def test_prefix_cache_warns_when_sampled_sentences_defeat_it(make_config: WorldFactory,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    cfg = make_config("model.towers.report.encoder.lora.layers=[1]", "model.towers.report.encoder.prefix_cache=64",
                      "run.max_steps=1", "data.augment.report_sentence_keep=0.8")
    with caplog.at_level(logging.WARNING, logger="medclr.train.loop"):
        train(cfg)
    assert "report_sentence_keep=0.8" in caplog.text and "rarely hit" in caplog.text
