"""``torchrun`` with 2 CPU processes (gloo) gives the same losses as one process on the same global batch, with DDP
(``run.strategy: ddp``) and with the text tower sharded by FSDP2 (``run.strategy: fsdp``), whose checkpoints are
plain full state dicts that load into an unsharded model and resume a sharded run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from medclr.config import load_config
from medclr.train import train
from medclr.train.checkpoint import load_model
from tests.conftest import REPO_ROOT
from tests.train.conftest import WorldFactory


def _losses(run_dir: Path) -> list[float]:
    return [float(json.loads(line)["loss"]) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _first_loss(run_dir: Path) -> float:
    return _losses(run_dir)[0]


def _torchrun(recipe: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "medclr",
           "train", str(recipe), *args]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


@pytest.mark.parametrize("loss", ["convirt"])
def test_two_gloo_processes_match_one_process(write_config: Callable[..., Path], tmp_path: Path, loss: str) -> None:
    recipe = write_config(f"loss.name={loss}", "run.max_steps=1", "run.ckpt_every=1", lora=False)
    proc = _torchrun(recipe, "--set", f"run.out_dir={tmp_path / 'ddp'}")
    assert "run dir:" in proc.stdout

    single = train(load_config(recipe, [f"run.out_dir={tmp_path / 'one'}"]))
    assert _first_loss(tmp_path / "ddp") == pytest.approx(_first_loss(single.run_dir), rel=1e-5, abs=1e-6)
    assert json.loads((tmp_path / "ddp" / "checkpoints" / "step_000001" / "checkpoint.json").read_text())[
        "world_size"] == 2


def _fsdp_recipe(write_config: Callable[..., Path], dropout_free_bert: Path) -> Path:
    """LoRA on the tiny BERT (frozen base + adapters, as with an LLM) without dropout (each rank has its own
    dropout stream, so only a dropout-free model can match one process); a constant lr so that a run's steps do
    not depend on run.max_steps (resume); validation after every step, on rank 0 with the gathered text tower,
    with training going on after it."""
    return write_config("run.max_steps=2", "run.ckpt_every=1", "run.val_every=1", "optim.schedule=constant",
                        "optim.warmup_steps=0", "run.strategy=fsdp",
                        f"model.towers.report.encoder.model={dropout_free_bert}", lora=True)


def test_fsdp_two_gloo_processes_match_one_process(write_config: Callable[..., Path], dropout_free_bert: Path,
                                                   tmp_path: Path) -> None:
    recipe = _fsdp_recipe(write_config, dropout_free_bert)
    proc = _torchrun(recipe, "--set", f"run.out_dir={tmp_path / 'fsdp'}")
    assert "text model is sharded across 2 ranks (3 units: BertEmbeddings, BertLayer" in proc.stderr
    single = train(load_config(recipe, [f"run.out_dir={tmp_path / 'one'}"]))  # strategy is moot in one process

    sharded, one = _losses(tmp_path / "fsdp"), _losses(single.run_dir)
    assert sharded[0] == pytest.approx(one[0], rel=1e-5, abs=1e-6)
    assert sharded[1] == pytest.approx(one[1], rel=1e-4, abs=1e-5)  # the update (sharded clip + AdamW) matches
    val = [json.loads(line) for line in (tmp_path / "fsdp" / "val.jsonl").read_text().splitlines()]
    assert len(val) == 2  # rank 0 validated alone after step 1 (and training went on), and after step 2
    val_one = json.loads((single.run_dir / "val.jsonl").read_text().splitlines()[0])
    assert val[0]["val/r1_mean"] == pytest.approx(val_one["val/r1_mean"], abs=1e-6)  # the gathered tower is whole

    # the checkpoint is a plain full state dict: it loads into an unsharded model (exact key check) ...
    folder = tmp_path / "fsdp" / "checkpoints" / "step_000002"
    assert (folder / "lora" / "report" / "adapter_model.safetensors").is_file()
    plain = load_model(tmp_path / "fsdp", checkpoint="step_000002")
    expected = single.model.state_dict() if single.model is not None else {}
    lora = [k for k in expected if "lora_" in k]
    assert lora
    for key in lora:  # ... with the adapters the single process trained (2 AdamW steps of ~lr = 1e-3 each)
        torch.testing.assert_close(plain.state_dict()[key], expected[key], rtol=1e-3, atol=1e-5)
    assert any(float(expected[k].abs().max()) > 1e-3 for k in lora if "lora_B" in k)  # B starts at 0: it moved
    state = torch.load(folder / "train_state.pt", weights_only=True)  # full (gathered) Adam moments, no DTensors
    moments = [v for s in state["optimizer"]["state"].values() for v in s.values() if isinstance(v, torch.Tensor)]
    assert moments and all(type(v) is torch.Tensor for v in moments)


@pytest.mark.slow
def test_fsdp_resume_continues_like_one_process(write_config: Callable[..., Path], dropout_free_bert: Path,
                                                tmp_path: Path) -> None:
    recipe = _fsdp_recipe(write_config, dropout_free_bert)
    run = tmp_path / "fsdp"
    _torchrun(recipe, "--set", f"run.out_dir={run}")
    _torchrun(run / "config.yaml", "--resume", str(run), "--set", "run.max_steps=3")
    single = train(load_config(recipe, [f"run.out_dir={tmp_path / 'one'}", "run.max_steps=3"]))
    assert _losses(run) == pytest.approx(_losses(single.run_dir), rel=1e-4, abs=1e-5)


@pytest.fixture
def one_process_group(tmp_path: Path) -> Iterator[None]:
    """A 1-rank gloo process group, so FSDP2 and DTensors run inside the test process."""
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_clip_grad_norm_over_sharded_and_plain_parameters(one_process_group: None) -> None:
    from torch import nn
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    from medclr.train.distributed import clip_grad_norm

    torch.manual_seed(0)
    reference = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))
    model.load_state_dict(reference.state_dict())
    fully_shard(model[1])  # its weights become DTensors; model[0] stays plain
    x = torch.randn(5, 4)
    for net in (reference, model):
        net(x).pow(2).sum().backward()
    params = list(model.parameters())
    assert any(isinstance(p, DTensor) for p in params) and not all(isinstance(p, DTensor) for p in params)

    norm = clip_grad_norm(params, 0.5)
    expected = float(torch.nn.utils.clip_grad_norm_(list(reference.parameters()), 0.5))
    assert norm == pytest.approx(expected, rel=1e-6)
    for p, q in zip(params, reference.parameters(), strict=True):
        grad = p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad
        torch.testing.assert_close(grad, q.grad)  # scaled alike, shards included


def test_idle_text_tower_runs_without_changing_the_loss(tiny_bert_dir: Path) -> None:
    from medclr.losses import ConvirtLoss
    from medclr.models import build_model
    from medclr.models.factory import model_config_from_dict
    from medclr.train.distributed import run_idle_text_towers
    from medclr.train.parts import ContrastiveStep
    from medclr.types import Batch
    from tests.train.conftest import model_dict

    torch.manual_seed(0)
    model = build_model(model_config_from_dict(model_dict(tiny_bert_dir)))
    step = ContrastiveStep(model, ConvirtLoss(), ["cxr", "ecg", "report"], dedupe_reports=False)
    batch = Batch(inputs={"cxr": torch.rand(4, 1, 32, 32), "ecg": torch.randn(4, 12, 500)},
                  present={})  # this rank's rows have no report
    plain = step(batch)["loss"]
    calls: list[int] = []
    model.tower("report").encoder.register_forward_hook(lambda *_: calls.append(1))
    run_idle_text_towers(step, model)
    out = step(batch)
    assert calls == [1]  # the text tower ran (on one empty text), as it must on every FSDP rank
    assert float(out["loss"].detach()) == pytest.approx(float(plain.detach()), rel=1e-6)
    out["loss"].backward()
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    assert lora and all(p.grad is not None and not p.grad.any() for p in lora)  # zero gradients, not None


def test_fsdp_refuses_a_prefix_cached_text_tower(make_config: WorldFactory) -> None:
    """FSDP shards the text model's block list, which the frozen-prefix cache slices: a clear config error, before
    any process group is touched (the check reads the config and the built model only)."""
    from types import SimpleNamespace

    from medclr.models import build_model
    from medclr.models.config import MedclrConfigError
    from medclr.train.loop import Trainer

    cfg = make_config("run.strategy=fsdp", "model.towers.report.encoder.lora.layers=[1]",
                      "model.towers.report.encoder.prefix_cache=8")
    trainer = Trainer.__new__(Trainer)  # only what _use_fsdp reads
    trainer.cfg, trainer.env, trainer.amp = cfg, SimpleNamespace(distributed=True), "none"  # type: ignore[assignment]
    trainer.model = build_model(cfg.model)
    with pytest.raises(MedclrConfigError, match="fsdp cannot run the frozen-prefix cache of \\['report'\\]"):
        trainer._use_fsdp()
