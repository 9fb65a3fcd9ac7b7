"""What a run reports while it trains: ``metrics.jsonl``, ``val.jsonl``, TensorBoard and a progress bar.

* ``metrics.jsonl`` - one JSON object per log step: ``step``, ``loss`` (mean over the steps since the last
  line), ``lr``, ``samples_per_s``, ``grad_norm``, ``logit_scale``, ``epoch``, ``skipped`` (non-finite steps in
  the window) and the loss parts (``loss/<part>``, ``n/<rows>``).
* ``val.jsonl`` - one JSON object per validation: ``step`` and flat metric keys (``val/r1/cxr->report``,
  ``val/probe_auroc/ecg``, ...).
* TensorBoard event files under ``tb/`` when ``tensorboard`` is installed (``pip install tensorboard``);
  without it nothing is written and nothing fails.
* a tqdm bar (steps, with samples/s and the ETA) on the main process.

On ``--resume`` lines after the checkpoint's step are dropped first (they describe steps that are re-run).
Only the main process writes.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

log = logging.getLogger(__name__)


def truncate_after(path: Path, step: int) -> None:
    """Keep only the JSON lines of ``path`` whose ``step`` is <= ``step``."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except ValueError:
            continue  # a line cut by a kill -9 mid-write
    path.write_text("".join(f"{line}\n" for line in kept))


class RunLog:
    """Appends metrics to the run directory (main process) and drives the progress bar."""

    def __init__(self, run_dir: Path, *, enabled: bool, tensorboard: bool, progress: bool, start: int,
                 total: int) -> None:
        self.run_dir, self.enabled = run_dir, enabled
        self.writer = _tensorboard(run_dir / "tb") if enabled and tensorboard else None
        self.bar = tqdm(total=total, initial=start, desc="train", unit="step", disable=not (enabled and progress),
                        dynamic_ncols=True)
        self.window: dict[str, float] = {}
        self.window_steps, self.window_skipped, self.window_samples = 0, 0, 0
        self.window_start = time.perf_counter()

    def step(self, stats: dict[str, float], samples: int, skipped: bool) -> None:
        """Add one optimizer step's statistics to the current window and advance the bar."""
        self.window_samples += samples
        if skipped:
            self.window_skipped += 1
        else:
            self.window_steps += 1
            for key, value in stats.items():
                self.window[key] = self.window.get(key, 0.0) + value
        self.bar.update(1)

    def flush(self, step: int, extra: dict[str, Any]) -> dict[str, Any]:
        """Write the window's means as one ``metrics.jsonl`` line and start a new window."""
        elapsed = max(time.perf_counter() - self.window_start, 1e-9)
        n = max(self.window_steps, 1)
        record: dict[str, Any] = {"step": step, **{k: v / n for k, v in self.window.items()}}
        record.setdefault("loss", None)  # every step of the window was skipped
        record.update(extra)
        record.update({"samples_per_s": round(self.window_samples / elapsed, 2), "skipped": self.window_skipped})
        if self.enabled:
            _append(self.run_dir / "metrics.jsonl", record)
            self._scalars(record, step)
            loss = record["loss"]
            self.bar.set_postfix(loss=f"{loss:.4f}" if loss is not None else "nan",
                                 sps=f"{record['samples_per_s']:.0f}", refresh=False)
        self.window, self.window_steps, self.window_skipped, self.window_samples = {}, 0, 0, 0
        self.window_start = time.perf_counter()
        return record

    def validation(self, step: int, metrics: dict[str, float]) -> None:
        if self.enabled:
            _append(self.run_dir / "val.jsonl", {"step": step, **metrics})
            self._scalars(metrics, step)
            shown = {k: round(v, 4) for k, v in metrics.items() if k.endswith("_mean")}
            self.bar.write(f"step {step}: {json.dumps(shown)}")

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()

    def _scalars(self, record: dict[str, Any], step: int) -> None:
        if self.writer is None:
            return
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float) and math.isfinite(value):
                self.writer.add_scalar(key, value, step)


def _append(path: Path, record: dict[str, Any]) -> None:
    """One strict-JSON line (a non-finite number is written as null)."""
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(clean, default=str) + "\n")


def _tensorboard(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed; metrics go to metrics.jsonl only (pip install tensorboard)")
        return None
    return SummaryWriter(str(folder))
