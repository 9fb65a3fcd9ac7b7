"""Bad input to read_cxr: hand-made broken files, then hypothesis-mutated DICOM/PNG/JPEG and random bytes.

The contract: ``read_cxr`` returns a float32 ``[H, W]`` image in [0, 1] or raises ``MedclrInputError``; never any
other exception and never a hang (each fuzz example runs under a wall-clock alarm).
"""

from __future__ import annotations

import io
import signal
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID, JPEG2000Lossless, RLELossless, generate_uid

from medclr.errors import MedclrInputError
from medclr.io.cxr import pil_to_float, read_cxr
from tests.io.cxr_fixtures import (
    CODECS,
    dicom_dataset,
    native_dicom,
    phantom,
    quantize,
    save,
    window_for,
    write_jpeg,
    write_png,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::PIL.Image.DecompressionBombWarning")
TIME_LIMIT_S = 10.0


def _error(path: Path) -> MedclrInputError:
    with pytest.raises(MedclrInputError) as info:
        read_cxr(path)
    assert info.value.path == str(path) and info.value.fix  # names the file and says what to do
    return info.value


# --- hand-made bad input -----------------------------------------------------------------------------------------

def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert "not found" in str(_error(tmp_path / "absent.dcm"))
    assert "directory" in str(_error(tmp_path))


@pytest.mark.parametrize("name", ["empty.dcm", "empty.png", "empty.jpg", "empty"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    assert "empty file" in str(_error(path))


def _dicom_bytes(tmp_path: Path) -> bytes:
    return native_dicom(tmp_path / "ok.dcm", quantize(phantom(), 12), bits_stored=12, **window_for(12)).read_bytes()


@pytest.mark.parametrize("keep", [0.6, 0.2, 140 / 8600])
def test_truncated_dicom(tmp_path: Path, keep: float) -> None:
    data = _dicom_bytes(tmp_path)
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: int(len(data) * keep)])
    _error(path)


def test_non_dicom_bytes_and_unsupported_formats(tmp_path: Path) -> None:
    fake = tmp_path / "fake.dcm"
    fake.write_bytes(b"this is not a DICOM file, just text pretending to be one\n" * 20)
    _error(fake)
    for name, payload in [("noise", bytes(range(256)) * 4), ("table.csv", b"a,b\n1,2\n")]:
        (tmp_path / name).write_bytes(payload)
        message = str(_error(tmp_path / name))
        assert "unsupported file format" in message and "DICOM" in message and "PNG" in message
    gif = tmp_path / "x.gif"
    Image.fromarray(quantize(phantom(), 8)).save(gif, "GIF")
    assert "JPEG" in str(_error(gif))


def _no_pixel_dicom(tmp_path: Path, sop_class: str, **attrs: object) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = UID(sop_class), generate_uid()
    meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1")
    ds = FileDataset("x", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = UID(sop_class), meta.MediaStorageSOPInstanceUID
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return save(ds, tmp_path / f"{sop_class}.dcm")


def test_dicom_without_pixels_points_to_read_ecg(tmp_path: Path) -> None:
    waveform = Dataset()
    waveform.NumberOfWaveformChannels, waveform.SamplingFrequency = 12, 500
    ecg = _no_pixel_dicom(tmp_path, "1.2.840.10008.5.1.4.1.1.9.1.1", Modality="ECG", WaveformSequence=[waveform])
    message = str(_error(ecg))
    assert "has no image pixels; is it an ECG waveform? use read_ecg" in message and "12-lead ECG" in message
    report = _no_pixel_dicom(tmp_path, "1.2.840.10008.5.1.4.1.1.88.11", Modality="SR")
    assert "no image pixels" in str(_error(report)) and "Basic Text SR" in str(_error(report))


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_truncated_and_corrupt_png_jpeg(tmp_path: Path, fmt: str) -> None:
    write = write_png if fmt == "png" else write_jpeg
    data = write(tmp_path / f"ok.{fmt}", quantize(phantom(), 8)).read_bytes()
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in str(_error(cut))
    middle = len(data) // 2
    corrupt = tmp_path / f"bad.{fmt}"
    corrupt.write_bytes(data[:middle] + bytes(b ^ 0x5A for b in data[middle : middle + 64]) + data[middle + 64 :])
    if fmt == "png":  # CRC and zlib checks catch it; a JPEG decoder may legitimately decode garbage
        _error(corrupt)


def test_png_chunk_crcs(tmp_path: Path) -> None:
    """check_png_crcs walks the chunks: a good file passes; a flipped CRC, a length past the end of the file and a
    file that is not a PNG are input errors that name the chunk and its byte offset."""
    from medclr.io.cxr import check_png_crcs

    data = write_png(tmp_path / "ok.png", quantize(phantom(), 8)).read_bytes()
    check_png_crcs(tmp_path / "ok.png")
    idat = data.index(b"IDAT") - 4  # the chunk's offset: its length field
    (length,) = struct.unpack(">I", data[idat : idat + 4])
    crc_at = idat + 8 + length
    flipped = tmp_path / "crc.png"
    flipped.write_bytes(data[:crc_at] + bytes([data[crc_at] ^ 1]) + data[crc_at + 1 :])
    with pytest.raises(MedclrInputError, match=f"chunk 'IDAT' at byte {idat} fails its CRC-32 check"):
        check_png_crcs(flipped)
    assert "CRC-32" in str(_error(flipped))  # read_cxr checks them too, after Pillow decoded the pixels
    long = tmp_path / "long.png"
    long.write_bytes(data[:idat] + struct.pack(">I", 2**31 - 1) + data[idat + 4 :])  # never allocated
    with pytest.raises(MedclrInputError, match=f"chunk 'IDAT' at byte {idat} runs past the end of the file"):
        check_png_crcs(long)
    with pytest.raises(MedclrInputError, match="not a PNG"):
        check_png_crcs(write_jpeg(tmp_path / "x.jpg", quantize(phantom(), 8)))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 8))


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (16, 16), (31, 64), (0, 64)])
def test_too_small_images(tmp_path: Path, rows: int, cols: int) -> None:
    if rows:
        small = quantize(phantom(rows, cols), 8)
        assert "32x32" in str(_error(native_dicom(tmp_path / "s.dcm", small, bits_stored=8)))
        assert "32x32" in str(_error(write_png(tmp_path / "s.png", small)))
    else:
        (tmp_path / "z.png").write_bytes(_png_header_only(cols, rows))
        _error(tmp_path / "z.png")


def test_smallest_accepted_image(tmp_path: Path) -> None:
    img, meta = read_cxr(write_png(tmp_path / "s.png", quantize(phantom(32, 32), 8)))
    assert img.shape == (32, 32) == (meta.height, meta.width)


def test_huge_headers_are_refused_before_decoding(tmp_path: Path) -> None:
    ds = dicom_dataset(quantize(phantom(), 8), bits_stored=8)
    ds.Rows = ds.Columns = 60000  # 3.6 G pixels claimed, 4 kB stored
    assert "expected between" in str(_error(save(ds, tmp_path / "huge.dcm")))
    (tmp_path / "huge.png").write_bytes(_png_header_only(100_000, 100_000))
    assert "too large" in str(_error(tmp_path / "huge.png"))
    (tmp_path / "big.png").write_bytes(_png_header_only(9000, 9000))  # under Pillow's limit, over medclr's
    assert "expected between" in str(_error(tmp_path / "big.png"))


def test_inf_after_rescale(tmp_path: Path) -> None:
    path = native_dicom(tmp_path / "inf.dcm", quantize(phantom(), 12), bits_stored=12, RescaleSlope="1e308",
                        RescaleIntercept="1e308")
    assert "NaN or infinite" in str(_error(path))


@pytest.mark.parametrize(("attrs", "needle"), [
    ({"PhotometricInterpretation": "PALETTE COLOR"}, "PALETTE COLOR"),
    ({"BitsStored": 4, "HighBit": 3}, "bits stored"),
    ({"SamplesPerPixel": 3}, "3 samples"),
])
def test_unsupported_pixel_encodings(tmp_path: Path, attrs: dict[str, object], needle: str) -> None:
    ds = dicom_dataset(quantize(phantom(), 8), bits_stored=8)
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    assert needle in str(_error(save(ds, tmp_path / "u.dcm")))


def test_unreadable_transfer_syntax_uid(tmp_path: Path) -> None:
    """Found by fuzzing: a file meta Transfer Syntax UID whose VR byte flipped to US is a list of ints."""
    data = bytearray(_dicom_bytes(tmp_path))
    at = data.find(b"\x02\x00\x10\x00UI")
    data[at + 4 : at + 6] = b"US"
    (tmp_path / "ts.dcm").write_bytes(bytes(data))
    assert "Transfer Syntax UID" in str(_error(tmp_path / "ts.dcm"))


def test_bilevel_png_and_out_of_range_32_bit_pixels(tmp_path: Path) -> None:
    assert "unsupported image mode" in str(_error(write_png(tmp_path / "b.png", quantize(phantom(), 8), mode="1")))
    with pytest.raises(MedclrInputError, match="outside the 16-bit range"):
        pil_to_float(Image.fromarray(np.full((64, 64), 70_000, dtype=np.int32)))


# --- property-based fuzzing --------------------------------------------------------------------------------------

class _Hang(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` in the reader can swallow it."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    if not hasattr(signal, "setitimer"):  # no SIGALRM (Windows): run unguarded
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise _Hang

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _check(data: bytes, suffix: str) -> None:
    """read_cxr(data) is a valid image or a MedclrInputError, within the time limit."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            with _time_limit(TIME_LIMIT_S):
                img, meta = read_cxr(path)
        except MedclrInputError:
            return
        except _Hang as hang:
            raise AssertionError(f"read_cxr ran longer than {TIME_LIMIT_S} s") from hang
    assert img.dtype == np.float32 and img.ndim == 2 and img.shape == (meta.height, meta.width)
    assert np.isfinite(img).all() and img.min() >= 0.0 and img.max() <= 1.0


def _encoded(write: Callable[[io.BytesIO], None]) -> bytes:
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


@cache
def _seeds() -> dict[str, tuple[bytes, str]]:
    """Valid 64x64 files to mutate: (bytes, file suffix)."""
    grey8, grey12 = quantize(phantom(), 8), quantize(phantom(), 12)
    mono1 = dicom_dataset(grey8, bits_stored=8, photometric="MONOCHROME1", PixelSpacing=[0.2, 0.2])
    native = dicom_dataset(grey12, bits_stored=12, RescaleSlope=1.0, RescaleIntercept=-10.0, **window_for(12))
    rle = dicom_dataset(grey12, bits_stored=12)
    rle.compress(RLELossless, encoding_plugin="pydicom")
    j2k = dicom_dataset(grey12, bits_stored=12)
    j2k.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    baseline = next(c for c in CODECS if c.name == "jpeg-baseline")
    jpeg_dcm = baseline.encode(dicom_dataset(grey8, bits_stored=8), grey8)
    seeds = {name: (_encoded(lambda b, d=ds: dcmwrite(b, d, enforce_file_format=True)), ".dcm")  # type: ignore[misc]
             for name, ds in [("mono1", mono1), ("native", native), ("rle", rle), ("j2k", j2k), ("jpeg", jpeg_dcm)]}
    seeds["png8"] = (_encoded(lambda b: Image.fromarray(grey8).save(b, "PNG")), ".png")
    seeds["png16"] = (_encoded(lambda b: Image.fromarray(quantize(phantom(), 16)).save(b, "PNG")), ".png")
    seeds["jpg"] = (_encoded(lambda b: Image.fromarray(grey8).save(b, "JPEG", quality=90)), ".jpg")
    return seeds


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[bytes, str]:
    """A seed with 1-3 mutations: truncation, XOR-flipped bytes, inserted or overwritten garbage."""
    data, suffix = _seeds()[draw(st.sampled_from(sorted(_seeds())))]
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        if not buf:
            break
        # half the positions in the first 512 bytes, where the headers are
        pos = draw(st.one_of(st.integers(0, min(511, len(buf) - 1)), st.integers(0, len(buf) - 1)))
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "overwrite"]))
        if kind == "truncate":
            del buf[pos:]
        elif kind == "flip":
            for offset in draw(st.lists(st.integers(0, 16), min_size=1, max_size=4)):
                if pos + offset < len(buf):
                    buf[pos + offset] ^= draw(st.integers(1, 255))
        else:
            junk = draw(st.binary(min_size=1, max_size=32))
            buf[pos : pos + (len(junk) if kind == "overwrite" else 0)] = junk
    return bytes(buf), suffix


@given(_mutated())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_files_give_an_image_or_an_input_error(case: tuple[bytes, str]) -> None:
    _check(*case)


PREFIXES = [b"", b"\0" * 128 + b"DICM", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\x08\x00\x05\x00CS\x0a\x00"]


@given(st.sampled_from(PREFIXES), st.binary(max_size=2048), st.sampled_from(["", ".dcm", ".png", ".jpg"]))
@settings(max_examples=60, deadline=None)
def test_random_bytes_give_an_input_error(prefix: bytes, body: bytes, suffix: str) -> None:
    _check(prefix + body, suffix)
