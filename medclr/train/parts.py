"""The pieces the training loop is assembled from: run directory, data, loss step module, train mode.

Each is a plain function of the config so the loop in :mod:`medclr.train.loop` stays short, and each can be
tested alone.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from medclr.config import TrainConfig, config_diff, load_config
from medclr.data.cache import CacheSettings, StudyCache, build_cache, wait_for_cache
from medclr.data.collate import Collator, ReportTokenizer
from medclr.data.dataset import StudyDataset
from medclr.data.transforms import Augmenter
from medclr.errors import MedclrError, MedclrInputError
from medclr.losses import LOSSES, MultimodalLoss
from medclr.models import MedClr
from medclr.models.config import MedclrConfigError
from medclr.models.encoders.report import ReportEncoder
from medclr.train.distributed import DistEnv
from medclr.train.sampler import EpochBatches, GlobalBatchSampler
from medclr.types import Batch, EncoderOutput, TokenizedText

log = logging.getLogger(__name__)

# Keys a resumed run may change: they do not alter the optimisation trajectory.
RESUMABLE_CHANGES = ("run.max_steps", "run.ckpt_every", "run.keep_last", "run.log_every", "run.progress",
                     "run.tensorboard", "run.out_dir", "run.dist_timeout_min", "data.num_workers",
                     "data.cache_workers", "data.cache_dir", "data.manifest", "run.strategy")


def run_dir_for(cfg: TrainConfig, resume: Path | None) -> Path:
    """The run directory: ``resume`` (whose ``config.yaml`` must match ``cfg``) or a fresh ``run.out_dir``."""
    if resume is None:
        run_dir = Path(cfg.run.out_dir)
        if (run_dir / "config.yaml").exists():
            raise MedclrError(f"run.out_dir: {run_dir} already holds a run. Fix: resume it with --resume {run_dir}, "
                              "or choose another directory with --set run.out_dir=...")
        return run_dir
    if not (resume / "config.yaml").is_file():
        raise MedclrError(f"--resume {resume}: not a medclr run directory (no config.yaml)")
    changed = {k: v for k, v in config_diff(load_config(resume / "config.yaml"), cfg).items()
               if k not in RESUMABLE_CHANGES}
    if changed:
        detail = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items())[:5])
        raise MedclrConfigError(f"--resume {resume}: the config differs from the run's config.yaml ({detail}). "
                                f"Fix: resume with the run's own config ({resume / 'config.yaml'})")
    return resume


def modalities_of(cfg: TrainConfig) -> list[str]:
    """The modalities to train: ``data.modalities`` or every tower of the model."""
    return list(cfg.data.modalities or cfg.model.towers)


def open_study_cache(cfg: TrainConfig, env: DistEnv) -> StudyCache:
    """Build the cache on each node's local rank 0 (others wait for it), or reuse a matching one."""
    settings = CacheSettings(tuple(modalities_of(cfg)), cfg.data.image_size, cfg.data.cxr_dtype,
                             cfg.data.ecg_fs, cfg.data.ecg_samples, cfg.data.ecg_crop)
    if env.local_rank == 0:
        return build_cache(cfg.data.manifest, settings, cfg.data.cache_dir, workers=cfg.data.cache_workers,
                           progress=cfg.run.progress and env.is_main)
    return wait_for_cache(cfg.data.manifest, settings, cfg.data.cache_dir)


@dataclass
class Data:
    """Datasets, the resumable sampler and the collate function of a run."""

    cache: StudyCache
    train: StudyDataset
    val: StudyDataset | None
    sampler: GlobalBatchSampler
    collate: Collator
    modalities: list[str]


def build_data(cfg: TrainConfig, env: DistEnv, model: MedClr) -> Data:
    """Cache -> train/val datasets -> sampler and collate (tokenising with the model's text towers)."""
    cache = open_study_cache(cfg, env)
    modalities = modalities_of(cfg)
    aug = cfg.data.augment
    augment = Augmenter(aug, cfg.data.image_size, cfg.data.ecg_fs, cfg.run.seed) if aug.enabled else None
    train = StudyDataset(cache, cfg.data.train_split, modalities, augment=augment)
    val = None
    if (cache.rows["split"] == cfg.data.val_split).any():
        val = StudyDataset(cache, cfg.data.val_split, modalities, max_rows=cfg.data.val_max_rows)
    for m in modalities:
        if not train.present(m).any():
            log.warning("no training row has modality '%s'; its tower will not learn", m)
    if cfg.data.batch_size % env.world:
        raise MedclrConfigError(f"data.batch_size: {cfg.data.batch_size} is not divisible by the {env.world} "
                                "processes (it is the global batch size)")
    if len(train) < cfg.data.batch_size:
        raise MedclrConfigError(f"data.batch_size: {cfg.data.batch_size} exceeds the {len(train)} rows of split "
                                f"'{cfg.data.train_split}'")
    sampler = GlobalBatchSampler(len(train), cfg.data.batch_size, seed=cfg.run.seed, rank=env.rank, world=env.world)
    tokenizer = None
    if "report" in modalities and isinstance(model.tower("report").encoder, ReportEncoder):
        tokenizer = ReportTokenizer.from_encoder(model.tower("report").encoder)
    return Data(cache, train, val, sampler, Collator(modalities, tokenizer), modalities)


def loader(dataset: StudyDataset, *, batch_sampler: EpochBatches | None = None, batch_size: int = 1,
           collate: Collator, workers: int, seed: int, pin: bool) -> DataLoader[Batch]:
    """A DataLoader whose base seed comes from its own generator (never from the global torch RNG)."""
    generator = torch.Generator().manual_seed(seed)
    common = {"num_workers": workers, "collate_fn": collate, "generator": generator, "pin_memory": pin}
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **common)  # type: ignore[arg-type]
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **common)  # type: ignore[arg-type]


def build_loss(cfg: TrainConfig) -> MultimodalLoss:
    """``LOSSES[loss.name](**loss.kwargs)``; a bad argument is a config error naming the loss."""
    try:
        return LOSSES.get(cfg.loss.name)(**cfg.loss.kwargs)
    except (TypeError, ValueError) as err:
        raise MedclrConfigError(f"loss.kwargs: the '{cfg.loss.name}' loss rejects {cfg.loss.kwargs} ({err})") from None


def supports_groups(loss: MultimodalLoss, modalities: list[str]) -> bool:
    """Check that ``loss`` runs on ``modalities`` (a config error otherwise) and say whether it accepts
    ``groups`` (identical items): its ``supports_groups`` attribute when it has one, else a second call on the
    same two random rows with groups (a loss that cannot use them raises a :class:`MedclrInputError`)."""
    emb = {m: torch.nn.functional.normalize(torch.randn(2, 4), dim=-1) for m in modalities}
    token_modalities: tuple[str, ...] = getattr(loss, "token_modalities", ())
    extra: dict[str, Any] = {}
    if token_modalities:  # a token-level term: random unit token grids of 3 tokens per row
        grids = torch.nn.functional.normalize(torch.randn(2, 3, 4), dim=-1)
        extra["tokens"] = {m: EncoderOutput(pooled=emb[m], tokens=grids) for m in token_modalities if m in emb}
    try:
        loss(emb, torch.tensor(1.0), **extra)
    except MedclrInputError as err:
        raise MedclrConfigError(f"loss: {type(loss).__name__} does not fit the data modalities {modalities} "
                                f"({err}). Fix: set loss.kwargs (e.g. pairs) or data.modalities") from None
    declared = getattr(loss, "supports_groups", None)
    if declared is not None:
        return bool(declared)
    try:
        loss(emb, torch.tensor(1.0), groups={"report": torch.tensor([0, 1])}, **extra)
    except MedclrInputError:
        return False
    return True


def report_groups(text: TokenizedText) -> Tensor:
    """``[B]`` int64 ids, equal for identical token sequences (a fixed random projection of the ids; the same
    on every rank, so groups agree across processes)."""
    ids, mask = text.input_ids, text.attention_mask  # [B, L]
    weights = torch.randint(1, 2**31 - 1, (ids.shape[1],), generator=torch.Generator().manual_seed(0))
    keys = ((ids * mask) * weights.to(ids.device)).sum(1)  # int64 arithmetic, wraps deterministically
    return keys * 1_000_003 + mask.sum(1)


class ContrastiveStep(nn.Module):
    """Model + loss in one module, so DistributedDataParallel sees every parameter used (the logit scale too).

    ``forward(batch)`` embeds the batch, fills modalities no row has with zero rows (every rank must pass the
    same modality keys to the loss's collectives), and returns the loss dict. A loss with token-level terms
    names the modalities whose token grids it needs in ``token_modalities`` and gets them as ``tokens=``. Under
    ``run.amp`` autocast the loss gets float32 embeddings and runs in float32 unless it is ``autocast_safe``.
    """

    def __init__(self, model: MedClr, loss: MultimodalLoss, modalities: list[str], dedupe_reports: bool) -> None:
        super().__init__()
        self.model, self.loss = model, loss
        self.modalities, self.dedupe_reports = modalities, dedupe_reports

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        token_modalities: tuple[str, ...] = getattr(self.loss, "token_modalities", ())
        emb, grids = self.model.encode_batch(batch, token_modalities)  # {m: [B, D]}, {m: tokens [B, N, D]}
        scale = self.model.logit_scale
        for m in self.modalities:
            if m not in emb:
                emb[m] = scale.new_zeros(batch.size, self.model.embed_dim)
        present = {m: batch.present[m] for m in self.modalities if m in batch.present}
        groups = None
        report = batch.inputs.get("report")
        if self.dedupe_reports and isinstance(report, TokenizedText):
            groups = {"report": report_groups(report)}
        extra = {"tokens": grids} if token_modalities else {}
        # run.amp autocasts the towers; the loss only when it says it may (Symile's logits and GRAM's Gram
        # determinants of near-parallel unit vectors lose their sense in bf16)
        with torch.autocast(scale.device.type, enabled=False) if not self.loss.autocast_safe else nullcontext():
            return self.loss(emb, scale, present=present, groups=groups, **extra)


def set_train_mode(model: nn.Module) -> None:
    """Train mode, except encoders without trainable parameters (a frozen text base: no dropout noise)."""
    model.train()
    for module in model.modules():
        if isinstance(module, MedClr):
            for modality in module.modalities:
                encoder = module.tower(modality).encoder
                if not any(p.requires_grad for p in encoder.parameters()):
                    encoder.eval()
