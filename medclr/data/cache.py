"""The preprocessed study cache: decode every file once, then train from memory-mapped arrays.

Decoding a DICOM or JPEG and resizing it costs milliseconds; reading a row of a memory-mapped array costs
microseconds. :func:`build_cache` runs :mod:`medclr.data.transforms`' preprocessing over a manifest once (in
parallel processes, with a progress bar) and writes one folder::

    <cache_dir>/<manifest stem>-<key>/
        info.json         settings, manifest hash, label names, counts (written last)
        rows.parquet      study_id, subject_id, split, report, cxr_ok, ecg_ok, label/* (one row per manifest row)
        cxr.npy           uint8 or uint16 [N, S, S]  X-rays, aspect-preserving resize + centred padding
        geometry.npy      int32 [N, 8]                (H0, W0, h, w, top, bottom, left, right) per X-ray
        ecg.npy           float16 [N, 12, T]          ECGs in mV at ecg_fs, cropped/padded to T samples
        quarantine.csv    study_id, modality, path, reason: every file that failed to read

``key`` hashes the manifest file's bytes and the preprocessing settings, so a cache is reused exactly when both
match, and a changed manifest or setting builds a new folder. The folder is built under a temporary name and
renamed into place (atomic: a crashed build never looks finished; two builders racing keep the first).

A row whose file fails to read is **not dropped**: its ``cxr_ok`` / ``ecg_ok`` is false (the modality is
absent for that study, as if it had never been acquired), and the file and the reason are listed in
``quarantine.csv`` and counted in ``info.json``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medclr.data.manifest import LABEL_PREFIX, Manifest, read_manifest
from medclr.data.transforms import fit_ecg, quantize, resize_pad
from medclr.errors import MedclrError, MedclrInputError

log = logging.getLogger(__name__)

CACHE_VERSION = 1
CHUNK_ROWS = 64
_READ_ERRORS = (MedclrError, OSError, ValueError, RuntimeError, EOFError, KeyError, IndexError, TypeError)


@dataclass(frozen=True)
class CacheSettings:
    """Everything that changes the cached arrays (part of the cache key)."""

    modalities: tuple[str, ...] = ("cxr", "ecg", "report")
    image_size: int = 128
    cxr_dtype: str = "uint8"
    ecg_fs: float = 100.0
    ecg_samples: int = 1000
    ecg_crop: str = "start"
    version: int = CACHE_VERSION


@dataclass
class StudyCache:
    """A built cache folder: the row table, label names and lazily opened (read-only) memory maps."""

    root: Path
    info: dict[str, Any]

    @cached_property
    def rows(self) -> pd.DataFrame:
        return pd.read_parquet(self.root / "rows.parquet")

    @property
    def settings(self) -> CacheSettings:
        data = dict(self.info["settings"])
        return CacheSettings(**{**data, "modalities": tuple(data["modalities"])})

    @property
    def labels(self) -> list[str]:
        return list(self.info["labels"])

    def array(self, name: str) -> np.ndarray:
        """``cxr``, ``ecg`` or ``geometry`` as a read-only memory map (open once per process)."""
        maps: dict[str, np.ndarray] = self.__dict__.setdefault("_maps", {})
        if name not in maps:
            maps[name] = np.load(self.root / f"{name}.npy", mmap_mode="r")
        return maps[name]

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers reopen the maps themselves
        return {"root": self.root, "info": self.info}


def cache_key(manifest_path: Path, settings: CacheSettings, roots: dict[str, str]) -> str:
    """sha256 of the manifest bytes, the settings and the modality roots (hex)."""
    digest = hashlib.sha256()
    with manifest_path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    digest.update(json.dumps({"settings": asdict(settings), "roots": roots}, sort_keys=True).encode())
    return digest.hexdigest()


def build_cache(manifest: str | Path, settings: CacheSettings, cache_dir: str | Path | None = None, *,
                workers: int = 0, progress: bool = True) -> StudyCache:
    """Return the cache of ``manifest`` for ``settings``, building it first when no matching one exists."""
    manifest_path = Path(manifest)
    m = read_manifest(manifest_path)
    root_dir = Path(cache_dir) if cache_dir else manifest_path.parent / ".medclr_cache"
    key = cache_key(manifest_path, settings, m.info.roots)
    final = root_dir / f"{manifest_path.stem}-{key[:16]}"
    if (final / "info.json").is_file():
        log.info("reusing the cache %s", final)
        return open_cache(final)
    tmp = root_dir / f".{final.name}.tmp-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir(parents=True)
    try:
        _build_into(tmp, m, settings, key, workers, progress)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first: keep its folder
            if not (final / "info.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return open_cache(final)


def open_cache(root: str | Path) -> StudyCache:
    """Open a built cache folder."""
    path = Path(root)
    try:
        info = json.loads((path / "info.json").read_text())
    except (OSError, ValueError) as err:
        raise MedclrInputError(path, f"not a finished medclr cache ({err})", "delete it and train again") from None
    return StudyCache(path, info)


def wait_for_cache(manifest: str | Path, settings: CacheSettings, cache_dir: str | Path | None,
                   poll_s: float = 2.0) -> StudyCache:
    """For ranks that do not build: wait until the builder's folder appears, then open it."""
    manifest_path = Path(manifest)
    m = read_manifest(manifest_path)
    root_dir = Path(cache_dir) if cache_dir else manifest_path.parent / ".medclr_cache"
    final = root_dir / f"{manifest_path.stem}-{cache_key(manifest_path, settings, m.info.roots)[:16]}"
    while not (final / "info.json").is_file():
        time.sleep(poll_s)
    return open_cache(final)


def _build_into(folder: Path, m: Manifest, settings: CacheSettings, key: str, workers: int, progress: bool) -> None:
    from tqdm.auto import tqdm

    start = time.perf_counter()
    n, s, t = len(m.frame), settings.image_size, settings.ecg_samples
    _create(folder / "cxr.npy", np.dtype(settings.cxr_dtype), (n, s, s) if "cxr" in settings.modalities else (0,))
    _create(folder / "ecg.npy", np.dtype(np.float16), (n, 12, t) if "ecg" in settings.modalities else (0,))
    geometry = np.zeros((n, 8), dtype=np.int32)
    ok = {mod: np.zeros(n, dtype=bool) for mod in ("cxr", "ecg")}
    problems: list[dict[str, str]] = []
    jobs = _jobs(m, settings, folder)
    with tqdm(total=n, desc="cache", unit="study", disable=not progress) as bar:
        for result in _run(jobs, workers):
            for i, geom in result["geometry"]:
                geometry[i], ok["cxr"][i] = geom, True
            for i in result["ecg_ok"]:
                ok["ecg"][i] = True
            problems += result["problems"]
            bar.update(result["n"])
    np.save(folder / "geometry.npy", geometry)
    _write_rows(folder / "rows.parquet", m, ok, settings)
    _write_quarantine(folder / "quarantine.csv", problems)
    info = {"key": key, "settings": asdict(settings), "manifest": str(m.path), "source": m.info.source,
            "labels": m.labels, "n_rows": n, "n_quarantined": len(problems),
            "n_cxr": int(ok["cxr"].sum()), "n_ecg": int(ok["ecg"].sum()),
            "build_seconds": round(time.perf_counter() - start, 2)}
    (folder / "info.json").write_text(json.dumps(info, indent=1))
    if problems:
        log.warning("cache: %d file(s) failed to read and are masked as missing; see %s", len(problems),
                    folder.name + "/quarantine.csv")


def _create(path: Path, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    arr.flush()
    del arr


def _jobs(m: Manifest, settings: CacheSettings, folder: Path) -> list[dict[str, Any]]:
    """Chunks of (row, study_id, X-ray path, ECG path, ECG fs) for the worker processes."""
    frame = m.frame

    def paths(modality: str, column: str) -> list[str | None]:
        if modality not in settings.modalities or column not in frame.columns:
            return [None] * len(frame)
        return [None if pd.isna(p) else str(m.resolve(modality, str(p))) for p in frame[column]]  # type: ignore[arg-type]

    cxr, ecg = paths("cxr", "cxr_path"), paths("ecg", "ecg_path")
    ids = frame["study_id"].astype(str).tolist()
    rows = list(zip(range(len(frame)), ids, cxr, ecg, strict=True))
    return [{"folder": str(folder), "settings": asdict(settings), "rows": rows[i : i + CHUNK_ROWS]}
            for i in range(0, len(rows), CHUNK_ROWS)]


def _run(jobs: Sequence[dict[str, Any]], workers: int) -> Iterator[dict[str, Any]]:
    """Results of :func:`_build_chunk` per job: in this process for small work, else in a process pool."""
    n_workers = min(workers or os.cpu_count() or 1, len(jobs))
    if n_workers <= 1:
        yield from map(_build_chunk, jobs)
        return
    with ProcessPoolExecutor(n_workers) as pool:  # the platform's default start method, as prepare and synth
        yield from pool.map(_build_chunk, jobs)


def _build_chunk(job: dict[str, Any]) -> dict[str, Any]:
    """Decode, preprocess and write one chunk of rows into the memory maps (runs in a worker process)."""
    from medclr.io import read_cxr, read_ecg

    folder, st = Path(job["folder"]), job["settings"]
    cxr = np.load(folder / "cxr.npy", mmap_mode="r+") if "cxr" in st["modalities"] else None
    ecg = np.load(folder / "ecg.npy", mmap_mode="r+") if "ecg" in st["modalities"] else None
    out: dict[str, Any] = {"geometry": [], "ecg_ok": [], "problems": [], "n": len(job["rows"])}
    for i, study, cxr_path, ecg_path in job["rows"]:
        if cxr is not None and cxr_path is not None:
            try:
                image, _ = read_cxr(cxr_path)
                resized, geom = resize_pad(image, st["image_size"])
                cxr[i] = quantize(resized, st["cxr_dtype"])
                out["geometry"].append((i, tuple(geom)))
            except _READ_ERRORS as err:
                out["problems"].append(_problem(study, "cxr", cxr_path, err))
        if ecg is not None and ecg_path is not None:
            try:
                signal, meta = read_ecg(ecg_path)
                ecg[i] = fit_ecg(signal, meta.fs, st["ecg_fs"], st["ecg_samples"], st["ecg_crop"])
                out["ecg_ok"].append(i)
            except _READ_ERRORS as err:
                out["problems"].append(_problem(study, "ecg", ecg_path, err))
    for arr in (cxr, ecg):
        if arr is not None:
            arr.flush()
    return out


def _problem(study: str, modality: str, path: str, err: Exception) -> dict[str, str]:
    reason = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}" if str(err) else type(err).__name__
    return {"study_id": study, "modality": modality, "path": path, "reason": reason}


def _write_rows(path: Path, m: Manifest, ok: dict[str, np.ndarray], settings: CacheSettings) -> None:
    frame = m.frame
    rows = pd.DataFrame({
        "study_id": frame["study_id"].astype(str),
        "subject_id": frame["subject_id"].astype(str),
        "split": frame["split"].astype(str),
        "report": frame["report"].astype(object).where(frame["report"].notna(), None)
        if "report" in frame.columns and "report" in settings.modalities else None,
        "cxr_ok": ok["cxr"],
        "ecg_ok": ok["ecg"],
    })
    for name in m.labels:
        rows[f"{LABEL_PREFIX}{name}"] = frame[f"{LABEL_PREFIX}{name}"].astype("float32")
    rows.to_parquet(path, index=False)


def _write_quarantine(path: Path, problems: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["study_id", "modality", "path", "reason"])
        writer.writeheader()
        writer.writerows(problems)
