"""Training data path: the preprocessed cache against decoding every X-ray per sample, side by side in one run.

    .venv/bin/python benchmarks/cache_bench.py [--manifest M] [--patients 60] [--size 128] [--json OUT]

Without ``--manifest`` a tiny synthetic world is generated in a temporary folder (MIMIC-style DICOM X-rays of
320-384 px; real MIMIC-CXR images are ~2500 x 3000 and decode 10-50x slower, so the ratio here is a floor).
Everything runs in this one process with one torch thread: the rates are **per core**.

- ``io.cache_vs_raw_cxr``: samples/s of ``StudyDataset[i]`` (memory-mapped uint8 row -> float tensor) vs the raw
  path ``read_cxr`` + aspect-preserving resize + pad -> float tensor, on the same studies. Goal: >= 20x, and
  the cached loader >= 1,000 samples/s per core.
- ``io.cache_vs_raw_cxr_augmented``: both paths followed by the same MONAI training augmentation (what a
  training DataLoader worker does per X-ray); the augmentation's own cost bounds this ratio.
- ``io.cache_loader_vs_raw_loader``: whole training samples (X-ray + ECG + report, augmented) collated into
  batches of 32 through a DataLoader (0 workers), cached vs raw (raw also reads and resamples the WFDB ECG).
- ``io.cache_build``: the one-off cost of building the cache (studies/s; X-ray + ECG; parallel over processes).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from report import emit  # benchmarks/ is on sys.path when a benchmark runs as a script

from medclr.config import AugmentConfig
from medclr.data.cache import CacheSettings, build_cache
from medclr.data.collate import Collator
from medclr.data.dataset import StudyDataset
from medclr.data.manifest import Manifest, read_manifest
from medclr.data.transforms import Augmenter, fit_ecg, resize_pad
from medclr.io import read_cxr, read_ecg
from medclr.types import Sample


def _world(folder: Path, patients: int) -> Path:
    from medclr.data.prepare import PrepareOptions, prepare
    from medclr.synth.world import generate_world

    generate_world(folder / "world", preset="tiny", patients=patients, seed=0, workers=0, progress=False)
    prepare("synth", PrepareOptions(root=folder / "world", progress=False), folder / "paired.parquet")
    return folder / "paired.parquet"


def _rate(fn: Callable[[int], Any], n: int, repeats: int) -> float:
    """Best-of-``repeats`` items per second of ``fn(i)`` for i < n."""
    fn(0)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, time.perf_counter() - start)
    return n / best


class RawDataset(torch.utils.data.Dataset[Sample]):
    """The no-cache path: decode, resize and resample every file on every access."""

    def __init__(self, m: Manifest, size: int, settings: CacheSettings, augment: Augmenter | None) -> None:
        self.m, self.size, self.settings, self.augment = m, size, settings, augment

    def __len__(self) -> int:
        return len(self.m.frame)

    def __getitem__(self, i: int) -> Sample:
        row = self.m.frame.iloc[i]
        image, _ = read_cxr(self.m.resolve("cxr", str(row["cxr_path"])))
        x = torch.from_numpy(resize_pad(image, self.size)[0])[None]
        signal, meta = read_ecg(self.m.resolve("ecg", str(row["ecg_path"])))
        ecg = fit_ecg(signal, meta.fs, self.settings.ecg_fs, self.settings.ecg_samples)
        sample: Sample = {"id": str(row["study_id"]), "report": str(row["report"]), "labels": torch.zeros(0)}
        if self.augment is not None:
            rng = self.augment.generator(0, i)
            x, ecg = self.augment.cxr(x, rng), self.augment.ecg(ecg, rng)
        sample["cxr"], sample["ecg"] = x, torch.from_numpy(ecg)
        return sample


def _loader_rate(dataset: torch.utils.data.Dataset[Sample], batches: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=False, num_workers=0,
                                         collate_fn=Collator(["cxr", "ecg", "report"]))
    start, seen = time.perf_counter(), 0
    for i, batch in enumerate(loader):
        seen += batch.size
        if i + 1 == batches:
            break
    return seen / (time.perf_counter() - start)


def run(manifest: Path, size: int, repeats: int, cache_dir: Path) -> dict[str, dict[str, Any]]:
    settings = CacheSettings(image_size=size, ecg_fs=100.0, ecg_samples=1000)
    m = read_manifest(manifest)
    start = time.perf_counter()
    cache = build_cache(manifest, settings, cache_dir, workers=0, progress=False)
    build_rate = len(m) / (time.perf_counter() - start)
    n = len(m)
    augment = Augmenter(AugmentConfig(), size, settings.ecg_fs, seed=0)
    cached = StudyDataset(cache, None, ["cxr"])
    cached_aug = StudyDataset(cache, None, ["cxr"], augment=augment)
    paths = [m.resolve("cxr", str(p)) for p in m.frame["cxr_path"]]

    def raw(i: int) -> torch.Tensor:
        image, _ = read_cxr(paths[i])
        return torch.from_numpy(resize_pad(image, size)[0])[None]  # [1, S, S]

    def raw_aug(i: int) -> torch.Tensor:
        return augment.cxr(raw(i), augment.generator(0, i))

    r_cache, r_raw = _rate(lambda i: cached[i], n, repeats), _rate(raw, n, repeats)
    a_cache, a_raw = _rate(lambda i: cached_aug[i], n, repeats), _rate(raw_aug, n, repeats)
    full = StudyDataset(cache, None, ["cxr", "ecg", "report"], augment=augment)
    batches = max(1, n // 32)
    l_cache = _loader_rate(full, batches)
    l_raw = _loader_rate(RawDataset(m, size, settings, augment), batches)
    unit = "samples/s"
    return {
        "io.cache_vs_raw_cxr": {"ratio": r_cache / r_raw, "cached": f"{r_cache:,.0f} {unit}",
                                "raw": f"{r_raw:,.0f} {unit}", "n": n, "size": size},
        "io.cache_vs_raw_cxr_augmented": {"ratio": a_cache / a_raw, "cached": f"{a_cache:,.0f} {unit}",
                                          "raw": f"{a_raw:,.0f} {unit}"},
        "io.cache_loader_vs_raw_loader": {"ratio": l_cache / l_raw, "cached": f"{l_cache:,.0f} {unit}",
                                          "raw": f"{l_raw:,.0f} {unit}", "batch": 32},
        "io.cache_build": {"ratio": 1.0, "rate": f"{build_rate:,.1f} studies/s", "seconds": round(n / build_rate, 1)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, help="a prepared paired manifest (default: a generated world)")
    parser.add_argument("--patients", type=int, default=60, help="patients of the generated world")
    parser.add_argument("--size", type=int, default=128, help="cached image size")
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds (best of)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)  # per-core rates
    np.random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = args.manifest or _world(Path(tmp), args.patients)
        results = run(manifest, args.size, args.repeats, Path(tmp) / "cache")
    emit(results, f"{platform.processor() or platform.machine()}, python {sys.version.split()[0]}, 1 thread",
         args.json)


if __name__ == "__main__":
    main()
