"""Reader throughput: medclr.io against the naive path, side by side in one run, printed as ratios.

    .venv/bin/python benchmarks/io_bench.py [--quick] [--json OUT]

Each entry times medclr's reader and a naive baseline on the same files, interleaved, best of ``--repeats``
rounds. ``ratio`` = medclr throughput / baseline throughput (higher is better; < 1 means medclr pays for the
extra work it does: lead matching by name, unit checks, limb-lead derivation, DICOM VOI/windowing, validation).

- ``io.ecg_reader_vs_rdsamp``: ``read_ecg`` vs ``wfdb.rdsamp`` on the real PTB-XL 500 Hz records.
- ``io.ecg_reader_vs_rdsamp_cinc_mat``: the same on the real CinC-2021 ``.hea`` + ``.mat`` records.
- ``io.cxr_dicom_vs_pydicom``: ``read_cxr`` vs ``pydicom.dcmread(...).pixel_array`` scaled to [0, 1], on
  16-bit MONOCHROME1 2048 x 2048 DICOMs with a window (written to a temporary folder) and the real JPEG DICOM.
- ``io.cxr_png_vs_pillow``: ``read_cxr`` vs ``numpy.asarray(PIL.Image.open(p)) / 255`` on the real NIH PNGs.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import wfdb
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from report import emit  # benchmarks/ is on sys.path when a benchmark runs as a script

from medclr.io import read_cxr, read_ecg

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def _time_all(fn: Callable[[Path], Any], paths: Sequence[Path]) -> float:
    start = time.perf_counter()
    for p in paths:
        fn(p)
    return time.perf_counter() - start


def compare(
    name: str,
    paths: Sequence[Path],
    ours: Callable[[Path], Any],
    baseline: Callable[[Path], Any],
    repeats: int,
    unit: str = "files",
) -> dict[str, Any]:
    """Best-of-``repeats`` throughput of both readers on the same files, rounds interleaved."""
    ours(paths[0]), baseline(paths[0])  # warm imports and codec plugins
    t_ours, t_base = [], []
    for _ in range(repeats):
        t_base.append(_time_all(baseline, paths))
        t_ours.append(_time_all(ours, paths))
    ours_rate, base_rate = len(paths) / min(t_ours), len(paths) / min(t_base)
    return {
        "ratio": ours_rate / base_rate,
        f"medclr_{unit}_per_s": round(ours_rate, 1),
        f"baseline_{unit}_per_s": round(base_rate, 1),
        "n": len(paths),
        "what": name,
    }


def _rdsamp(path: Path) -> np.ndarray:
    signal, _ = wfdb.rdsamp(str(path.with_suffix("")))
    return signal


def _pydicom_naive(path: Path) -> np.ndarray:
    arr = pydicom.dcmread(path).pixel_array.astype(np.float32)
    return (arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-6)


def _pillow_naive(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im, dtype=np.float32) / 255.0


def write_dicom_16bit(path: Path, rng: np.random.Generator, size: int = 2048) -> Path:
    """A 16-bit (12 stored) MONOCHROME1 CR with rescale and a window, uncompressed: a typical PACS export."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.ViewPosition = "CR", "PA"
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 3000
    ds.PixelData = rng.integers(0, 4096, (size, size), dtype=np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def run(quick: bool, repeats: int) -> dict[str, dict[str, Any]]:
    ptbxl = sorted((REAL / "ptbxl" / "records500" / "00000").glob("*_hr.hea"))[: 50 if quick else 200]
    cinc = sorted((REAL / "cinc2021").glob("*.hea"))
    pngs = sorted((REAL / "nih_chestxray14" / "images").glob("*.png"))[: 8 if quick else 24]
    real_dcm = sorted((REAL / "siim_dicom").glob("*.dcm"))
    results = {
        "io.ecg_reader_vs_rdsamp": compare(
            "read_ecg vs wfdb.rdsamp, PTB-XL 12x5000", ptbxl, read_ecg, _rdsamp, repeats, "records"
        ),
        "io.ecg_reader_vs_rdsamp_cinc_mat": compare(
            "read_ecg vs wfdb.rdsamp, CinC-2021 .mat", cinc, read_ecg, _rdsamp, repeats, "records"
        ),
        "io.cxr_png_vs_pillow": compare("read_cxr vs Pillow, NIH PNG", pngs, read_cxr, _pillow_naive, repeats),
        "io.cxr_dicom_jpeg_vs_pydicom": compare(
            "read_cxr vs pydicom, real JPEG-baseline DICOM", real_dcm * 8, read_cxr, _pydicom_naive, repeats
        ),
    }
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        dcms = [write_dicom_16bit(Path(tmp) / f"{i}.dcm", rng) for i in range(3 if quick else 8)]
        results["io.cxr_dicom_vs_pydicom"] = compare(
            "read_cxr vs pydicom, 16-bit MONOCHROME1 2048^2 windowed", dcms, read_cxr, _pydicom_naive, repeats
        )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer files and rounds")
    parser.add_argument("--repeats", type=int, default=None, help="timing rounds (default 3, quick 2)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    results = run(args.quick, args.repeats or (2 if args.quick else 3))
    emit(results, f"{platform.processor() or platform.machine()}, python {sys.version.split()[0]}", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
