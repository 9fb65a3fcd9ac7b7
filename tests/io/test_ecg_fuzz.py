"""Property-based robustness of read_ecg: mutated WFDB headers and signal files, CSVs and DICOMs.

Whatever the bytes, read_ecg either returns float32 ``[12, T]`` or raises MedclrInputError, within seconds
and without allocating what a corrupted header asks for.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal as os_signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from medclr.errors import MedclrInputError
from medclr.io.ecg import read_ecg
from tests.io.ecg_fixtures import standard_dicom_ecg, synthetic_ecg, write_csv, write_wfdb

TIME_LIMIT_S = 10.0
FUZZ = settings(max_examples=50, deadline=None)


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Fail (rather than hang) if the body runs longer than ``seconds`` (SIGALRM, main thread, POSIX)."""

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"read_ecg took longer than {seconds} s")

    previous = os_signal.signal(os_signal.SIGALRM, on_alarm)
    os_signal.setitimer(os_signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        os_signal.setitimer(os_signal.ITIMER_REAL, 0)
        os_signal.signal(os_signal.SIGALRM, previous)


def _read_or_reject(path: Path) -> None:
    """The property: float32 ``[12, T]`` with consistent metadata, or MedclrInputError; nothing else."""
    try:
        with _time_limit(TIME_LIMIT_S):
            ecg, meta = read_ecg(path)
    except MedclrInputError as err:
        assert str(err).startswith(str(err.path)) and err.problem
        return
    assert ecg.dtype == np.float32 and ecg.ndim == 2 and ecg.shape[0] == 12
    assert meta.n_samples == ecg.shape[1] >= 1 and 0.0 <= meta.nan_fraction <= 1.0


@st.composite
def _mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """Truncate, flip bytes, insert or overwrite garbage."""
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "overwrite"]))
    at = draw(st.integers(0, len(data)))
    if kind == "truncate":
        return data[:at]
    if kind == "flip":
        out = bytearray(data)
        for position in draw(st.lists(st.integers(0, max(len(data) - 1, 0)), min_size=1, max_size=8)):
            if out:
                out[position] ^= draw(st.integers(1, 255))
        return bytes(out)
    garbage = draw(st.binary(min_size=1, max_size=64))
    return data[:at] + garbage + data[at + (len(garbage) if kind == "overwrite" else 0) :]


_NUMBERS = st.sampled_from(["0", "-1", "1", "7", "65536", "999999999999", "2147483648", "0.0", "", "x", "16x9999"])


@st.composite
def _mutated_header(draw: st.DrawFn, text: str) -> bytes:
    """Replace numeric tokens of a header with hostile values, and sometimes garble its bytes as well."""
    tokens = re.split(r"(\d+(?:\.\d+)?)", text)
    for index in draw(st.lists(st.integers(0, len(tokens) - 1), max_size=4)):
        if re.fullmatch(r"\d+(?:\.\d+)?", tokens[index]):
            tokens[index] = draw(_NUMBERS)
    data = "".join(tokens).encode("ascii", errors="replace")
    return draw(_mutated(data)) if draw(st.booleans()) else data


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory, real_data: Path) -> dict[str, Path]:
    """One valid file of each kind: generated WFDB, real CinC-2021 .mat record, CSV, DICOM."""
    root = tmp_path_factory.mktemp("valid")
    leads = synthetic_ecg(400, fs=500)
    write_wfdb(root, "rec", leads)
    for suffix in (".hea", ".mat"):
        shutil.copyfile(real_data / "cinc2021" / f"E07500{suffix}", root / f"E07500{suffix}")
    write_csv(root / "ecg.csv", {f"{name} (uV)": v * 1000 for name, v in leads.items()})
    standard_dicom_ecg(root / "ecg.dcm", n_samples=400)
    return {
        "hea": root / "rec.hea",
        "dat": root / "rec.dat",
        "mat": root / "E07500.mat",
        "csv": root / "ecg.csv",
        "dcm": root / "ecg.dcm",
    }


def _copy_record(valid: dict[str, Path], stem: str) -> Path:
    """Fresh copies of a record's files in a new directory (hypothesis reuses one tmp_path across examples)."""
    directory = Path(tempfile.mkdtemp(dir=valid["hea"].parent.parent))
    for source in valid["hea"].parent.glob(f"{stem}.*"):
        shutil.copyfile(source, directory / source.name)
    return directory


def test_valid_fixtures_read(valid: dict[str, Path]) -> None:
    for key in ("hea", "mat", "csv", "dcm"):
        assert read_ecg(valid[key])[0].shape[0] == 12


@FUZZ
@given(data=st.data())
@example(data=None)  # the unmutated file
def test_mutated_wfdb_header(valid: dict[str, Path], data: st.DataObject | None) -> None:
    directory = _copy_record(valid, "rec")
    text = valid["hea"].read_text()
    mutated = text.encode() if data is None else data.draw(_mutated_header(text))
    (directory / "rec.hea").write_bytes(mutated)
    _read_or_reject(directory / "rec")


@pytest.mark.parametrize(
    "record_line", ["rec 12 500 999999999999", "rec 0 500 400", "rec 12 99999999 400", "rec 12 0 400"]
)
def test_hostile_record_lines(valid: dict[str, Path], record_line: str) -> None:
    directory = _copy_record(valid, "rec")
    lines = valid["hea"].read_text().splitlines()
    (directory / "rec.hea").write_text("\n".join([record_line, *lines[1:]]) + "\n")
    with pytest.raises(MedclrInputError):
        read_ecg(directory / "rec")


@FUZZ
@given(data=st.data())
def test_mutated_wfdb_signal_file(valid: dict[str, Path], data: st.DataObject) -> None:
    directory = _copy_record(valid, "rec")
    (directory / "rec.dat").write_bytes(data.draw(_mutated(valid["dat"].read_bytes())))
    _read_or_reject(directory / "rec")


@FUZZ
@given(data=st.data())
def test_mutated_cinc2021_mat_file(valid: dict[str, Path], data: st.DataObject) -> None:
    directory = _copy_record(valid, "E07500")
    (directory / "E07500.mat").write_bytes(data.draw(_mutated(valid["mat"].read_bytes())))
    _read_or_reject(directory / "E07500.mat")


@FUZZ
@given(data=st.data())
def test_mutated_csv(valid: dict[str, Path], data: st.DataObject) -> None:
    path = Path(tempfile.mkdtemp(dir=valid["csv"].parent.parent)) / "ecg.csv"
    path.write_bytes(data.draw(_mutated(valid["csv"].read_bytes())))
    _read_or_reject(path)


@FUZZ
@given(data=st.data())
def test_mutated_dicom(valid: dict[str, Path], data: st.DataObject) -> None:
    path = Path(tempfile.mkdtemp(dir=valid["dcm"].parent.parent)) / "ecg.dcm"
    path.write_bytes(data.draw(_mutated(valid["dcm"].read_bytes())))
    _read_or_reject(path)
