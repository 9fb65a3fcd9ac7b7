"""``medclr train``: the training loop (single process or one process per GPU under ``torchrun``).

One optimizer step:

1. ``grad_accum`` micro-batches, each its own contrastive batch: forward (``ContrastiveStep``: model + loss, under
   ``run.amp`` autocast: bf16 on CUDA or CPU, fp16 on CUDA), ``loss / grad_accum`` backward (DDP syncs
   gradients on the last one only);
2. unscale (fp16), clip the global gradient norm (``optim.clip``);
3. **non-finite guard**: if the loss (mean over ranks) or the gradient norm is NaN/inf, the update is skipped
   and logged; after ``run.max_nonfinite_steps`` such steps in a row the run stops with a
   :class:`MedclrTrainingError` naming the last good checkpoint;
4. AdamW step and the warmup + cosine schedule.

Every ``log_every`` steps a line goes to ``metrics.jsonl``; every ``val_every`` steps (and at the end) the main
process validates, and a checkpoint is written (also every ``ckpt_every`` steps). The best checkpoint by
``run.best_metric`` is kept and pointed to by ``checkpoints/best``.

**Exact resume.** The data position (epoch, batches done), optimizer, scheduler, scaler, the RNG states of every
rank and the counters are checkpointed; augmentations are seeded per (seed, epoch, sample) and DataLoaders draw
their seeds from their own generators, so a run killed at any moment and resumed ends with the same weights as
an uninterrupted run (on CPU with ``run.deterministic``; tested in ``tests/train/test_resume.py``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from medclr.config import TrainConfig
from medclr.data.manifest import read_manifest
from medclr.errors import MedclrError, MedclrInputError
from medclr.eval.prompts import PromptSet, default_prompts
from medclr.models import MedClr, build_model
from medclr.models.config import MedclrConfigError
from medclr.models.encoders.prefix_cache import FrozenPrefixCache
from medclr.train import checkpoint as ckpt
from medclr.train import distributed as dist_env
from medclr.train.card import write_model_card, write_run_files
from medclr.train.observe import RunLog, truncate_after
from medclr.train.optim import build_optimizer, build_scheduler
from medclr.train.parts import (
    ContrastiveStep,
    build_data,
    build_loss,
    loader,
    run_dir_for,
    set_train_mode,
    supports_groups,
)
from medclr.train.sampler import EpochBatches
from medclr.train.validate import validate
from medclr.types import Batch

log = logging.getLogger(__name__)
_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_amp(amp: str, device: torch.device) -> str:
    """The precision ``run.amp`` gives on ``device``: ``auto`` is bf16 where the device computes bfloat16 natively
    (CUDA: ``torch.cuda.is_bf16_supported()``; CPU: :func:`cpu_has_native_bf16`), else none; fp16 needs CUDA (its
    loss scaler is CUDA's)."""
    if amp == "auto":
        if device.type == "cuda":
            native = torch.cuda.is_bf16_supported()
        else:
            native = device.type == "cpu" and cpu_has_native_bf16()
        amp = "bf16" if native else "none"
        log.info("run.amp=auto on %s: %s", device.type, amp)
    if amp == "fp16" and device.type != "cuda":
        raise MedclrConfigError("run.amp: fp16 needs a CUDA device; on CPU use run.amp=bf16 (fast where the CPU "
                                "has AVX512-BF16 or AMX: run.amp=auto picks it there) or none")
    return amp


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """The CPU has bfloat16 arithmetic (x86 ``avx512_bf16`` or ``amx_bf16``), where oneDNN runs bf16 matmuls ~1.7x
    faster than fp32 (the demo's text tower, 2 cores); elsewhere bf16 is emulated and can be slower. Linux's
    ``/proc/cpuinfo`` flags; False where it cannot be read."""
    try:
        flags = {flag for line in cpuinfo.read_text().splitlines() if line.startswith("flags")
                 for flag in line.split(":", 1)[1].split()}
    except (OSError, IndexError):
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


class MedclrTrainingError(MedclrError):
    """Training cannot continue (e.g. repeated non-finite losses); the message says what to try."""


@dataclass
class Progress:
    """Counters saved in every checkpoint (all primitives)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    nonfinite_in_row: int = 0
    best_metric: str = ""
    best_value: float | None = None
    best_step: int | None = None
    last_val: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    """What :func:`train` returns: the run directory and a summary of the run."""

    run_dir: Path
    steps: int
    last_loss: float | None
    best: dict[str, Any] | None
    seconds: float
    model: MedClr | None = None


def train(cfg: TrainConfig, resume: str | Path | None = None) -> TrainResult:
    """Train ``cfg`` (or continue the run in ``resume``); see the module docstring."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    env = dist_env.setup(cfg.run)
    try:
        return Trainer(cfg, env, Path(resume) if resume is not None else None).run()
    finally:
        dist_env.teardown(env)
        torch.use_deterministic_algorithms(previous[0])
        torch.set_num_threads(previous[1])


class Trainer:
    """Holds the model, data, optimizer and counters of one run; :meth:`run` trains to ``run.max_steps``."""

    def __init__(self, cfg: TrainConfig, env: dist_env.DistEnv, resume: Path | None) -> None:
        self.amp = resolve_amp(cfg.run.amp, env.device)
        self.cfg, self.env = cfg, env
        if not Path(cfg.data.manifest).is_file():  # fail before minutes of model building
            raise MedclrInputError(cfg.data.manifest, "data.manifest: manifest not found",
                                   "create it with `medclr prepare SOURCE --root DIR --out FILE` (configs/train/"
                                   "README.md says how for each recipe) or pass --set data.manifest=PATH")
        self.run_dir = run_dir_for(cfg, resume)
        dist_env.seed_everything(cfg.run.seed)  # identical initial weights on every rank
        self.model = build_model(cfg.model).to(env.device)
        self.data = build_data(cfg, env, self.model)
        loss = build_loss(cfg)
        dedupe = cfg.loss.dedupe_reports
        if dedupe is None:  # every rank probes alike (the probe may run the loss's collectives)
            dedupe = supports_groups(loss, self.data.modalities) and "report" in self.data.modalities
        elif not dedupe:
            supports_groups(loss, self.data.modalities)  # still check that the loss fits the modalities
        self.step_module = ContrastiveStep(self.model, loss, self.data.modalities, dedupe)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, cfg.run.max_steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        self.progress = Progress()
        dist_env.seed_everything(cfg.run.seed + 1000 * env.rank)  # per-rank dropout streams
        if resume is not None:
            self._restore()
        self.wrapped = self._wrap()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self._warn_uncachable_texts()
        if env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_run_files(self.run_dir, cfg, self.data.cache, self.model)
        self.stream = self._batches()

    def _restore(self) -> None:
        folder = ckpt.latest_checkpoint(self.run_dir)
        if self.env.is_main:
            ckpt.remove_partial(self.run_dir)
        if folder is None:
            log.warning("%s has no complete checkpoint yet: starting from step 0", self.run_dir)
            if self.env.is_main:
                for name in ("metrics.jsonl", "val.jsonl"):
                    truncate_after(self.run_dir / name, 0)
            return
        ckpt.load_weights(self.model, folder / ckpt.WEIGHTS)
        state, rng = ckpt.read_train_state(folder, self.env.device)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for factor in self.scheduler.lr_lambdas:  # the saved state carries the old max_steps: a longer run
            factor.__dict__.update(total=self.cfg.run.max_steps)  # stretches its cosine to the new end
        self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress(**state["progress"])
        rank_rng = rng.get(f"rank{self.env.rank}")
        if rank_rng is None:
            log.warning("no RNG state for rank %d in %s (world size changed): dropout streams restart",
                        self.env.rank, folder)
        else:
            dist_env.set_rng_state(rank_rng)
        if self.env.is_main:
            for name in ("metrics.jsonl", "val.jsonl"):
                truncate_after(self.run_dir / name, self.progress.step)
        log.info("resumed %s at step %d", folder, self.progress.step)

    def _wrap(self) -> nn.Module:
        """The module the steps run: the plain step (one process), or DDP around it; with ``run.strategy: fsdp``
        the text towers are first sharded with FSDP2 (DDP then ignores their parameters) and the optimizer is
        pointed at the sharded parameters (see :mod:`medclr.train.distributed`)."""
        self.sharded = self._use_fsdp()
        if self.cfg.run.compile:
            for modality in self.model.modalities:
                self.model.tower(modality).encoder.compile()
        if not self.env.distributed:
            return self.step_module
        from torch.nn.parallel import DistributedDataParallel

        module: nn.Module = self.step_module
        if self.env.device.type == "cuda" and self.cfg.run.sync_batchnorm:
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        if self.sharded:
            old_names = {id(p): n for n, p in self.model.named_parameters()}
            ignored = dist_env.shard_text_towers(self.model, self.env, self.amp)
            dist_env.rebind_optimizer(self.optimizer, old_names, self.model)
            dist_env.run_idle_text_towers(module, self.model)
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                module, [f"model.{name}" for name in ignored])
        ids = [self.env.device.index] if self.env.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids,
                                       find_unused_parameters=self.cfg.run.find_unused_parameters)

    def _use_fsdp(self) -> bool:
        """``run.strategy: fsdp`` under torchrun with more than one process and a text tower to shard."""
        if self.cfg.run.strategy != "fsdp" or not self.env.distributed:
            return False
        if self.amp == "fp16":
            raise MedclrConfigError("run.strategy: fsdp needs run.amp=bf16 or none (fp16 loss scaling does not "
                                    "handle sharded gradients)")
        texts = dist_env.fsdp_text_models(self.model)
        quantized = [m for m in texts if getattr(self.cfg.model.towers[m].encoder, "quantization", "none") != "none"]
        if quantized:
            raise MedclrConfigError(f"run.strategy: fsdp cannot shard the 8/4-bit text base of {quantized}; use "
                                    "quantization: none (FSDP already splits the weights across GPUs) or ddp")
        cached = sorted(set(texts) & set(self._prefix_caches()))
        if cached:
            raise MedclrConfigError(f"run.strategy: fsdp cannot run the frozen-prefix cache of {cached} (it splits "
                                    "the sharded block list); set prefix_cache: 0 or use run.strategy: ddp")
        if not texts:
            log.warning("run.strategy=fsdp: the model has no Hugging Face text tower to shard; plain DDP is used")
        return bool(texts)

    def _batches(self) -> Iterator[Batch]:
        """Training batches forever from one DataLoader (its workers live for the whole run), advancing
        (epoch, batch_in_epoch) as each batch is consumed."""
        d, p = self.data, self.progress
        per_epoch = d.sampler.batches_per_epoch
        batches = loader(d.train, batch_sampler=EpochBatches(d.sampler, p.epoch, p.batch_in_epoch),
                         collate=d.collate, workers=self.cfg.data.num_workers, seed=self.cfg.run.seed + p.epoch,
                         pin=self.env.device.type == "cuda")
        for batch in batches:
            p.batch_in_epoch += 1
            if p.batch_in_epoch >= per_epoch:
                p.epoch, p.batch_in_epoch = p.epoch + 1, 0
            yield batch

    def run(self) -> TrainResult:
        cfg, p = self.cfg.run, self.progress
        start_time, last_loss = time.perf_counter(), None
        runlog = RunLog(self.run_dir, enabled=self.env.is_main, tensorboard=cfg.tensorboard, progress=cfg.progress,
                        start=p.step, total=cfg.max_steps)
        try:
            while p.step < cfg.max_steps:
                stats, skipped = self._step()
                p.step += 1
                runlog.step(stats, self.cfg.data.batch_size * self.cfg.optim.grad_accum, skipped)
                if p.step % cfg.log_every == 0 or p.step == cfg.max_steps:
                    last_loss = runlog.flush(p.step, self._extra()).get("loss", last_loss)
                validate_now = p.step == cfg.max_steps or (cfg.val_every > 0 and p.step % cfg.val_every == 0)
                if validate_now:
                    with dist_env.gathered_text_towers(self.model, self.env, self.data.val is not None):
                        self._validate(runlog)  # FSDP: rank 0 runs the gathered text tower alone
                if validate_now or p.step % cfg.ckpt_every == 0:
                    self._checkpoint()
        finally:
            runlog.close()
        summary = self._summary(time.perf_counter() - start_time, last_loss)
        if self.env.is_main:
            write_model_card(self.run_dir, self.cfg, self.data.cache,
                             {"steps": p.step, "best": summary.best, "last_val": p.last_val})
        return summary

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp == "none":
            return contextlib.nullcontext()
        return torch.autocast(self.env.device.type, dtype=_AMP[self.amp])

    def _step(self) -> tuple[dict[str, float], bool]:
        """One optimizer step over ``grad_accum`` micro-batches; returns (mean stats, skipped)."""
        accum = self.cfg.optim.grad_accum
        set_train_mode(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for k in range(accum):
            batch = next(self.stream).to(self.env.device)
            no_sync = getattr(self.wrapped, "no_sync", None)
            sync_ctx = no_sync() if no_sync is not None and k < accum - 1 else contextlib.nullcontext()
            with sync_ctx:
                with self._autocast():
                    out = self.wrapped(batch)
                self.scaler.scale(out["loss"] / accum).backward()
            for key, value in out.items():
                if value.numel() == 1:
                    sums[key] = sums.get(key, 0.0) + float(value.detach()) / accum
        self.scaler.unscale_(self.optimizer)
        clip = self.cfg.optim.clip if self.cfg.optim.clip is not None else math.inf
        grad_norm = dist_env.clip_grad_norm(self.params, clip)
        stats = dist_env.mean_over_ranks(sums, self.env)
        loss_ok, grad_ok = math.isfinite(stats.get("loss", math.nan)), math.isfinite(grad_norm)
        if loss_ok and grad_ok:
            self.progress.nonfinite_in_row = 0
            self.scaler.step(self.optimizer)
        elif loss_ok and self.scaler.is_enabled():  # fp16 overflow: the scaler lowers its scale; not an error
            self.optimizer.zero_grad(set_to_none=True)
            log.info("step %d: fp16 gradient overflow; update skipped, loss scale lowered", self.progress.step + 1)
        else:
            self._nonfinite(stats, grad_norm)
        self.scaler.update()
        with warnings.catch_warnings():  # a skipped first update makes torch warn about the step order
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler.step()
        return {**stats, "grad_norm": grad_norm}, not (loss_ok and grad_ok)

    def _nonfinite(self, stats: dict[str, float], grad_norm: float) -> None:
        p = self.progress
        p.nonfinite_in_row += 1
        self.optimizer.zero_grad(set_to_none=True)
        log.warning("step %d: non-finite loss %s or gradient norm %s; update skipped (%d in a row)",
                    p.step + 1, stats.get("loss"), grad_norm, p.nonfinite_in_row)
        if p.nonfinite_in_row >= self.cfg.run.max_nonfinite_steps:
            last = ckpt.latest_checkpoint(self.run_dir)
            raise MedclrTrainingError(
                f"the loss or the gradients were non-finite for {p.nonfinite_in_row} steps in a row (up to step "
                f"{p.step + 1}); training stopped. Fix: lower optim.lr, keep optim.clip set, check the inputs "
                f"(quarantine list in the cache), or use run.amp=bf16 instead of fp16. Last good checkpoint: "
                f"{last if last is not None else 'none'} (resume with --resume {self.run_dir})")

    def _extra(self) -> dict[str, Any]:
        extra = {"lr": self.scheduler.get_last_lr()[0], "logit_scale": float(self.model.logit_scale.detach()),
                 "epoch": self.progress.epoch}
        for modality, cache in self._prefix_caches().items():  # share of texts whose frozen blocks were skipped
            extra[f"prefix_cache_hit_rate/{modality}"] = cache.hits / max(1, cache.hits + cache.misses)
        return extra

    def _prefix_caches(self) -> dict[str, FrozenPrefixCache]:
        caches = {m: getattr(self.model.tower(m).encoder, "prefix_cache", None) for m in self.model.modalities}
        return {m: cache for m, cache in caches.items() if isinstance(cache, FrozenPrefixCache)}

    def _warn_uncachable_texts(self) -> None:
        augment = self.cfg.data.augment
        if self._prefix_caches() and augment.enabled and augment.report_sentence_keep < 1.0:
            log.warning("prefix_cache with data.augment.report_sentence_keep=%g: sampled sentences make almost every "
                        "report a new text, so the cache will rarely hit. Fix: --set "
                        "data.augment.report_sentence_keep=1.0, or prefix_cache: 0", augment.report_sentence_keep)

    @functools.cached_property
    def _val_prompts(self) -> dict[str, PromptSet]:
        """The default zero-shot prompts for this manifest (:func:`medclr.eval.prompts.default_prompts`)."""
        info = read_manifest(self.cfg.data.manifest).info
        return {query: default_prompts(query, info) for query in ("cxr", "ecg", "joint")}

    def _validate(self, runlog: RunLog) -> None:
        """Main process: metrics on the validation split; remember the best (higher is better)."""
        if not self.env.is_main or self.data.val is None:
            return
        batches = loader(self.data.val, batch_size=self.cfg.data.batch_size, collate=self.data.collate,
                         workers=self.cfg.data.num_workers, seed=0, pin=False)
        groups = None
        if self.data.val.reports is not None:  # identical report texts count as the same item
            groups = {"report": pd.factorize(pd.Series(self.data.val.reports).fillna(""))[0]}
        metrics = validate(self.model, batches, self.env.device, self.data.modalities, self.data.val.label_names,
                           self.cfg.run.seed, groups, self._val_prompts, self.cfg.loss.name)
        p = self.progress
        p.last_val = metrics
        runlog.validation(p.step, metrics)
        if not p.best_metric:
            wanted = self.cfg.run.best_metric
            preference = ("val/zeroshot_auroc_label_mean", "val/probe_auroc_mean", "val/r1_mean")
            auto = next((k for k in preference if k in metrics), "val/r1_mean")
            p.best_metric = auto if wanted == "auto" else wanted
        value = metrics.get(p.best_metric)
        if value is not None and (p.best_value is None or value > p.best_value):
            p.best_value, p.best_step = value, p.step

    def _checkpoint(self) -> None:
        """All ranks hand their RNG state (and, under FSDP, their weight shards) to rank 0, which writes the
        checkpoint and moves the pointers."""
        rng = self._gather_rng()
        weights, optim = None, None
        if self.sharded:  # every rank takes part in gathering the shards into full tensors
            weights, optim = ckpt.full_state(self.model), dist_env.full_optimizer_state(self.optimizer)
        if self.env.is_main:
            p = self.progress
            optim = self.optimizer.state_dict() if optim is None else optim
            state = {"optimizer": optim, "scheduler": self.scheduler.state_dict(),
                     "scaler": self.scaler.state_dict(), "progress": p.__dict__.copy()}
            meta = {"epoch": p.epoch, "world_size": self.env.world, "val": p.last_val}
            folder = ckpt.write_checkpoint(self.run_dir, p.step, self.model, state, rng, meta, weights)
            if p.best_step == p.step:
                ckpt.set_pointer(self.run_dir, "best", folder)
            ckpt.prune(self.run_dir, self.cfg.run.keep_last)
        dist_env.barrier(self.env)

    def _gather_rng(self) -> dict[str, Any]:
        mine = dist_env.rng_state()
        if not self.env.distributed:
            return {"rank0": mine}
        import torch.distributed as dist

        every: list[Any] = [None] * self.env.world
        dist.all_gather_object(every, mine)
        return {f"rank{r}": s for r, s in enumerate(every)}

    def _summary(self, seconds: float, last_loss: float | None) -> TrainResult:
        p = self.progress
        best = None
        if p.best_step is not None:
            best = {"metric": p.best_metric, "value": p.best_value, "step": p.best_step,
                    "checkpoint": ckpt.step_name(p.best_step)}
        return TrainResult(self.run_dir, p.step, last_loss, best, seconds, self.model)
