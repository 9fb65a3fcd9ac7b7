"""The files that make a run directory describe itself (besides checkpoints and metrics).

* ``config.yaml`` - the resolved :class:`~medclr.config.TrainConfig` (model inlined, overrides applied);
* ``model.yaml`` - the :class:`~medclr.models.ModelConfig` alone (what ``medclr.load_model`` rebuilds);
* ``preprocessing.json`` - the cache settings (image size, ECG rate and length, modalities) and each text
  tower's tokenizer settings, so inference preprocesses exactly as training did;
* ``model_card.md`` - a human summary: data (with a link to the dataset's data card), architecture, objective,
  optimisation, the best validation metrics, intended use and limitations (Mitchell et al., "Model Cards for
  Model Reporting", FAT* 2019).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from medclr import __version__
from medclr.atomic import atomic_path
from medclr.config import TrainConfig, save_config
from medclr.data.cache import StudyCache

DATA_CARDS = Path(__file__).resolve().parents[2] / "data_cards"


def write_run_files(run_dir: Path, cfg: TrainConfig, cache: StudyCache, model: nn.Module) -> None:
    """``config.yaml``, ``model.yaml`` and ``preprocessing.json`` (main process)."""
    from medclr.models.encoders.report import ReportEncoder

    save_config(cfg, run_dir / "config.yaml")
    with atomic_path(run_dir / "model.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(cfg.model.to_dict(), sort_keys=False))
    tokenizers = {name.split(".")[1]: module.tokenizer_info() for name, module in model.named_modules()
                  if isinstance(module, ReportEncoder) and name.startswith("towers.")}
    prep = {"cache": asdict(cache.settings), "cxr_value_range": [0.0, 1.0], "ecg_units": "mV",
            "cxr_resize": "long side to image_size (bilinear, antialiased), centred zero padding to a square",
            "tokenizers": tokenizers, "labels": cache.labels}
    with atomic_path(run_dir / "preprocessing.json") as tmp:
        tmp.write_text(json.dumps(prep, indent=1))


def data_card_link(source: str) -> str:
    """A link to ``data_cards/<source>.md`` (absolute path when the card ships with this checkout)."""
    card = DATA_CARDS / f"{source}.md"
    return f"[data_cards/{source}.md]({card})" if card.is_file() else f"data_cards/{source}.md (not found)"


def write_model_card(run_dir: Path, cfg: TrainConfig, cache: StudyCache, summary: dict[str, Any]) -> Path:
    """Write ``model_card.md`` from the config, the cache's data facts and the run summary."""
    info = cache.info
    rows = cache.rows
    splits = rows["split"].value_counts().to_dict()
    towers = ", ".join(f"{m}: {t.encoder.registered_name}" for m, t in cfg.model.towers.items())
    best = summary.get("best") or {}
    lines = [
        f"# Model card: {run_dir.name}",
        "",
        f"Trained with medclr {__version__} on {datetime.now(UTC).isoformat(timespec='seconds')}.",
        "**Research use only. Not a medical device; not for diagnosis or treatment decisions.**",
        "",
        "## Data",
        f"- manifest: `{cfg.data.manifest}` (source `{info.get('source')}`; data card: "
        f"{data_card_link(str(info.get('source')))})",
        f"- studies: {len(rows)} ({', '.join(f'{k} {v}' for k, v in sorted(splits.items()))}); "
        f"X-rays {info.get('n_cxr')}, ECGs {info.get('n_ecg')}; files quarantined: {info.get('n_quarantined')} "
        f"(listed in `{cache.root / 'quarantine.csv'}`)",
        f"- preprocessing: X-ray {cfg.data.image_size} px square ({cfg.data.cxr_dtype}); ECG {cfg.data.ecg_fs:g} Hz,"
        f" {cfg.data.ecg_samples} samples ({cfg.data.ecg_crop} crop); see `preprocessing.json`",
        "",
        "## Model",
        f"- towers: {towers}; embedding size {cfg.model.embed_dim}; architecture in `model.yaml`",
        f"- objective: `{cfg.loss.name}` {json.dumps(cfg.loss.kwargs)}",
        f"- optimisation: AdamW lr {cfg.optim.lr:g}, weight decay {cfg.optim.weight_decay:g}, "
        f"{cfg.optim.warmup_steps} warmup steps, {cfg.optim.schedule} schedule, global batch {cfg.data.batch_size}"
        f" x {cfg.optim.grad_accum} accumulation, {summary.get('steps')} steps, seed {cfg.run.seed}",
        "",
        "## Validation",
        f"- best checkpoint: `{best.get('checkpoint', 'n/a')}` by `{best.get('metric', 'n/a')}` = "
        f"{_fmt(best.get('value'))} at step {best.get('step', 'n/a')}",
        *[f"- {k}: {_fmt(v)}" for k, v in sorted((summary.get("last_val") or {}).items()) if k.count("/") <= 2],
        "",
        "## Limitations",
        "- Validation metrics are computed on the manifest's validation split only; they say nothing about other "
        "hospitals, devices or populations. Check the data card for known biases of the training data.",
        "- Synthetic-data runs (source `synth`) demonstrate the pipeline; they carry no clinical meaning.",
        "",
        "Load with `medclr.load_model(run_dir)`; metrics per step are in `metrics.jsonl` and `val.jsonl`.",
    ]
    path = run_dir / "model_card.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
