"""Record checks of ``medclr prepare``: what ``quick`` and ``full`` catch, and the parallel path's equivalence."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.uid import JPEGBaseline8Bit

from medclr.data import Manifest, ManifestInfo
from medclr.data.validate import Problem, validate_manifest
from tests.io.cxr_fixtures import (
    _pillow_jpeg,
    dicom_dataset,
    encapsulated,
    native_dicom,
    save,
    write_jpeg,
    write_png,
)
from tests.io.ecg_fixtures import synthetic_ecg, write_wfdb

SIDE = 128


def _flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :]


def _chunk_crc_position(png: bytes, chunk: bytes) -> int:
    start = png.index(chunk)
    (length,) = struct.unpack(">I", png[start - 4 : start])
    return start + 4 + length


def _write_cxr_files(d: Path) -> None:
    """Good and broken X-rays; noise content so that compressed streams are long and every byte matters."""
    noise = np.random.default_rng(0).integers(0, 256, (SIDE, SIDE)).astype(np.uint8)
    png = write_png(d / "good.png", noise).read_bytes()
    (d / "png_truncated.png").write_bytes(png[: len(png) // 2])
    (d / "png_bad_ihdr_crc.png").write_bytes(_flip(png, _chunk_crc_position(png, b"IHDR")))
    idat_crc = _chunk_crc_position(png, b"IDAT")
    (d / "png_corrupt_idat.png").write_bytes(_flip(png, (png.index(b"IDAT") + idat_crc) // 2))
    (d / "png_bad_idat_crc.png").write_bytes(_flip(png, idat_crc))
    jpeg = write_jpeg(d / "good.jpg", noise).read_bytes()
    (d / "jpeg_truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    native_dicom(d / "good.dcm", noise, bits_stored=8)
    ds = pydicom.dcmread(d / "good.dcm")
    ds.PixelData = ds.PixelData[: SIDE * SIDE // 3]
    ds.save_as(d / "dicom_short_pixels.dcm")
    jpeg_frame = _pillow_jpeg(noise)[:2000]
    save(encapsulated(dicom_dataset(noise, bits_stored=8), JPEGBaseline8Bit, [jpeg_frame], lossy=True),
         d / "dicom_truncated_jpeg.dcm")


def _write_ecg_files(d: Path) -> None:
    write_wfdb(d, "ecg_good", synthetic_ecg(1000, 500.0))
    write_wfdb(d, "ecg_truncated", synthetic_ecg(1000, 500.0, seed=1))
    dat = d / "ecg_truncated.dat"
    dat.write_bytes(dat.read_bytes()[:5000])
    write_wfdb(d, "ecg_no_dat", synthetic_ecg(1000, 500.0, seed=2))
    (d / "ecg_no_dat.dat").unlink()
    leads = synthetic_ecg(1000, 500.0, seed=3)
    leads["V1"][:] = np.nan  # a chest lead that is entirely NaN: only a full read sees it
    write_wfdb(d, "ecg_nan_v1", leads)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("records")
    _write_cxr_files(d)
    _write_ecg_files(d)
    return d


# name -> (modality, caught by quick, caught by full, words in the reason)
CASES: dict[str, tuple[str, bool, bool, str]] = {
    "good.png": ("cxr", False, False, ""),
    "good.jpg": ("cxr", False, False, ""),
    "good.dcm": ("cxr", False, False, ""),
    "png_truncated.png": ("cxr", True, True, "truncated"),
    "png_bad_ihdr_crc.png": ("cxr", True, True, "cannot"),
    "png_corrupt_idat.png": ("cxr", True, True, "broken data stream"),
    "jpeg_truncated.jpg": ("cxr", True, True, "truncated"),
    "dicom_short_pixels.dcm": ("cxr", True, True, "pixel data"),
    "absent.png": ("cxr", True, True, "not found"),
    "ecg_good": ("ecg", False, False, ""),
    "ecg_truncated": ("ecg", True, True, "truncated"),
    "ecg_no_dat": ("ecg", True, True, "missing"),
    "ecg_nan_v1": ("ecg", False, True, "V1"),
}


def _manifest(d: Path, names: list[str]) -> Manifest:
    modality = {name: CASES.get(name, ("cxr",))[0] for name in names}
    frame = pd.DataFrame({
        "study_id": names,
        "subject_id": names,
        "split": "test",
        "cxr_path": [n if modality[n] == "cxr" else None for n in names],
        "ecg_path": [n if modality[n] == "ecg" else None for n in names],
    })
    return Manifest(frame, ManifestInfo(source="unit", roots={"cxr": str(d), "ecg": str(d)}, split_protocol="-"))


@pytest.mark.parametrize("level", ["quick", "full"])
def test_check_levels_catch_broken_records(data_dir: Path, level: str) -> None:
    names = list(CASES)
    ok, problems = validate_manifest(_manifest(data_dir, names), level=level, workers=1, progress=False)  # type: ignore[arg-type]
    by_id = {p.study_id: p for p in problems}
    for i, (name, (modality, quick, full, words)) in enumerate(CASES.items()):
        caught = quick if level == "quick" else full
        assert ok[i] == (not caught), f"{name} at {level}: expected caught={caught}"
        if caught:
            problem = by_id[name]
            assert problem.modality == modality and problem.path == str(data_dir / name)
            assert words.lower() in problem.reason.lower(), problem.reason
    assert len(problems) == int((~ok).sum())


@pytest.mark.parametrize("level", ["quick", "full"])
def test_png_with_only_a_bad_idat_crc_is_caught(data_dir: Path, level: str) -> None:
    """Pillow decodes it (it skips IDAT CRCs; zlib's Adler-32 holds), medclr.io's own CRC check does not."""
    ok, problems = validate_manifest(_manifest(data_dir, ["png_bad_idat_crc.png"]), level=level,  # type: ignore[arg-type]
                                     workers=1, progress=False)
    assert not ok[0] and "chunk 'IDAT' at byte" in problems[0].reason and "CRC-32" in problems[0].reason


@pytest.mark.parametrize("level", ["quick", "full"])
def test_dicom_with_truncated_jpeg_fragment_is_caught(data_dir: Path, level: str) -> None:
    ok, problems = validate_manifest(_manifest(data_dir, ["dicom_truncated_jpeg.dcm"]), level=level,  # type: ignore[arg-type]
                                     workers=1, progress=False)
    assert not ok[0] and "end marker" in problems[0].reason


def test_row_with_two_bad_files_gives_two_problems(data_dir: Path) -> None:
    frame = pd.DataFrame({"study_id": ["s"], "subject_id": ["p"], "split": ["train"],
                          "cxr_path": ["jpeg_truncated.jpg"], "ecg_path": ["ecg_no_dat"]})
    manifest = Manifest(frame, ManifestInfo(source="unit", roots={"cxr": str(data_dir), "ecg": str(data_dir)},
                                            split_protocol="-"))
    ok, problems = validate_manifest(manifest, workers=1, progress=False)
    assert ok.tolist() == [False] and [p.modality for p in problems] == ["cxr", "ecg"]


def test_unexpected_errors_become_problems(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(path: Path, level: str) -> None:
        raise RuntimeError("codec crashed")

    monkeypatch.setattr("medclr.data.validate.check_cxr", boom)
    ok, problems = validate_manifest(_manifest(data_dir, ["good.png", "ecg_good"]), workers=1, progress=False)
    assert ok.tolist() == [False, True]
    expected = Problem("good.png", "cxr", str(data_dir / "good.png"), "unexpected RuntimeError: codec crashed")
    assert problems == [expected]


def test_parallel_path_matches_serial(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = list(CASES) * 3  # several chunks' worth of work in the pool; ids made unique below
    manifest = _manifest(data_dir, names)
    manifest.frame["study_id"] = [f"{i}:{n}" for i, n in enumerate(names)]
    monkeypatch.setattr("medclr.data.validate._CHUNK", 4)
    serial_ok, serial = validate_manifest(manifest, level="full", workers=1, progress=False)
    monkeypatch.setattr("medclr.data.validate._PARALLEL_MIN_ROWS", 0)
    parallel_ok, parallel = validate_manifest(manifest, level="full", workers=2, progress=False)
    assert parallel_ok.tolist() == serial_ok.tolist()
    assert parallel == serial  # same problems, in row order
    assert int((~serial_ok).sum()) == 3 * sum(full for _, _, full, _ in CASES.values())


def test_rows_without_files_are_ok(data_dir: Path) -> None:
    frame = pd.DataFrame({"study_id": ["r"], "subject_id": ["p"], "split": ["val"], "report": ["No acute disease."]})
    manifest = Manifest(frame, ManifestInfo(source="unit", roots={}, split_protocol="-"))
    ok, problems = validate_manifest(manifest, level="full", workers=1, progress=False)
    assert ok.tolist() == [True] and problems == []
