"""The preprocessed cache: built once and reused, exact preprocessing, parallel = serial, quarantine not drop."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medclr.data import cache as cache_mod
from medclr.data.cache import CacheSettings, build_cache
from medclr.data.manifest import read_manifest, write_manifest
from medclr.data.transforms import fit_ecg, resize_pad
from medclr.types import Geometry

SETTINGS = CacheSettings(image_size=32, ecg_fs=50.0, ecg_samples=500)


@pytest.fixture(scope="module")
def small_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A paired manifest of a 12-patient tiny world (about ten studies)."""
    from medclr.data.prepare import PrepareOptions, prepare
    from medclr.synth.world import generate_world

    root = tmp_path_factory.mktemp("cache_world")
    generate_world(root / "world", preset="tiny", patients=12, seed=1, workers=1, progress=False)
    prepare("synth", PrepareOptions(root=root / "world", progress=False, workers=1), root / "paired.parquet")
    return root / "paired.parquet"


def test_resize_pad_keeps_the_aspect_and_records_the_geometry() -> None:
    image = np.random.default_rng(0).random((374, 321), dtype=np.float32)
    out, g = resize_pad(image, 128)
    assert out.shape == (128, 128) and out.dtype == np.float32
    assert (g.resized_h, g.resized_w, g.left, g.right, g.top, g.bottom) == (128, 110, 9, 9, 0, 0)
    assert np.all(out[:, :9] == 0) and np.all(out[:, -9:] == 0)
    geometry = Geometry(original_size=(374, 321), resized_size=(128, 110), pad=(0, 0, 9, 9))
    corners = geometry.to_original(np.array([[0.0, 9.0], [128.0, 119.0]]))
    assert np.allclose(corners, [[0, 0], [374, 321]])


def test_fit_ecg_resamples_crops_and_pads() -> None:
    t = np.arange(5000) / 500.0
    signal = np.tile(np.sin(2 * np.pi * 2.0 * t), (12, 1)).astype(np.float32)  # 2 Hz, 10 s at 500 Hz
    out = fit_ecg(signal, 500.0, 100.0, 1000)
    expected = np.sin(2 * np.pi * 2.0 * np.arange(1000) / 100.0)
    assert out.shape == (12, 1000)
    assert np.abs(out[0, 50:-50] - expected[50:-50]).max() < 0.01  # away from the filter's edges
    assert fit_ecg(signal, 500.0, 100.0, 1200)[:, 1000:].sum() == 0  # zero padding at the end
    centre = fit_ecg(signal, 500.0, 500.0, 1000, crop="center")
    assert np.allclose(centre, signal[:, 2000:3000])
    nan_signal = signal.copy()
    nan_signal[3, 10] = np.nan
    assert np.isfinite(fit_ecg(nan_signal, 500.0, 100.0, 1000)).all()


def test_cache_is_built_once_and_reused_when_nothing_changed(small_manifest: Path, tmp_path: Path) -> None:
    first = build_cache(small_manifest, SETTINGS, tmp_path, workers=1, progress=False)
    n = len(read_manifest(small_manifest))
    assert first.array("cxr").shape == (n, 32, 32) and first.array("cxr").dtype == np.uint8
    assert first.array("ecg").shape == (n, 12, 500) and first.array("ecg").dtype == np.float16
    assert first.info["n_cxr"] == n and first.info["n_quarantined"] == 0
    stamp = (first.root / "info.json").stat().st_mtime_ns
    again = build_cache(small_manifest, SETTINGS, tmp_path, workers=1, progress=False)
    assert again.root == first.root and (again.root / "info.json").stat().st_mtime_ns == stamp
    other = build_cache(small_manifest, replace(SETTINGS, image_size=48), tmp_path, workers=1, progress=False)
    assert other.root != first.root and other.array("cxr").shape[1:] == (48, 48)
    assert not list(tmp_path.glob(".*tmp*")), "no temporary folder may remain"


def test_parallel_build_equals_serial_build(small_manifest: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    serial = build_cache(small_manifest, SETTINGS, tmp_path / "a", workers=1, progress=False)
    monkeypatch.setattr(cache_mod, "CHUNK_ROWS", 3)
    parallel = build_cache(small_manifest, SETTINGS, tmp_path / "b", workers=2, progress=False)
    for name in ("cxr", "ecg", "geometry"):
        assert np.array_equal(serial.array(name), parallel.array(name)), name


def test_unreadable_files_are_quarantined_and_masked_not_dropped(small_manifest: Path, tmp_path: Path) -> None:
    m = read_manifest(small_manifest)
    garbage = Path(m.info.roots["cxr"]) / "garbage.dcm"
    garbage.write_bytes(b"not a dicom at all" * 10)
    m.frame.loc[0, "cxr_path"] = "garbage.dcm"
    m.frame.loc[1, "ecg_path"] = "files/does/not/exist"
    broken = tmp_path / "broken.parquet"
    write_manifest(m, broken)
    cache = build_cache(broken, SETTINGS, tmp_path / "cache", workers=1, progress=False)
    assert len(cache.rows) == len(m.frame)
    assert not cache.rows["cxr_ok"][0] and cache.rows["ecg_ok"][0]
    assert not cache.rows["ecg_ok"][1] and cache.rows["cxr_ok"][1]
    with (cache.root / "quarantine.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["study_id"], r["modality"]) for r in rows] == [(m.frame.study_id[0], "cxr"),
                                                              (m.frame.study_id[1], "ecg")]
    assert all(r["reason"] for r in rows) and cache.info["n_quarantined"] == 2
