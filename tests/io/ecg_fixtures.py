"""Test-time ECG files: synthetic 12-lead signals written as WFDB records, DICOM waveforms and CSVs.

The synthetic limb leads obey Einthoven's law and Goldberger's equations exactly (they are built from two
random leads I and II), so a reader that maps leads by name returns them unchanged and derived leads can be
checked against the truth. Values are in mV; the writers quantise them to 1 uV.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import wfdb
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medclr.io.leads import LIMB_COEFFICIENTS, PRECORDIAL_LEADS, STANDARD_LEADS

TWELVE_LEAD_ECG_STORAGE = "1.2.840.10008.5.1.4.1.1.9.1.1"
# DICOM CID 3001 "ECG Leads": SCP-ECG code and code meaning, as carts write them.
SCPECG_LEADS: dict[str, tuple[str, str]] = {
    "I": ("5.6.3-9-1", "Lead I (Einthoven)"),
    "II": ("5.6.3-9-2", "Lead II"),
    "III": ("5.6.3-9-61", "Lead III"),
    "aVR": ("5.6.3-9-62", "Lead aVR"),
    "aVL": ("5.6.3-9-63", "Lead aVL"),
    "aVF": ("5.6.3-9-64", "Lead aVF"),
    "V1": ("5.6.3-9-3", "Lead V1"),
    "V2": ("5.6.3-9-4", "Lead V2"),
    "V3": ("5.6.3-9-5", "Lead V3"),
    "V4": ("5.6.3-9-6", "Lead V4"),
    "V5": ("5.6.3-9-7", "Lead V5"),
    "V6": ("5.6.3-9-8", "Lead V6"),
    "-aVR": ("5.6.3-9-65", "Lead -aVR"),
}
UV_PER_MV = 1000.0


def synthetic_ecg(n_samples: int = 1000, fs: float = 500.0, seed: int = 0) -> dict[str, np.ndarray]:
    """12 leads in mV, ``{name: [T]}`` in STANDARD_LEADS order; the limb leads are exactly consistent."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / fs  # [T]

    def wave() -> np.ndarray:
        amplitudes, freqs, phases = rng.uniform(0.05, 0.5, 4), rng.uniform(0.5, 25.0, 4), rng.uniform(0, 6.3, 4)
        return (amplitudes[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])).sum(0)

    lead_i, lead_ii = wave(), wave()
    leads = {name: a * lead_i + b * lead_ii for name, (a, b) in LIMB_COEFFICIENTS.items()}
    leads |= {name: wave() for name in PRECORDIAL_LEADS}
    return {name: leads[name] for name in STANDARD_LEADS}


def stack(leads: Mapping[str, np.ndarray]) -> np.ndarray:
    """``[12, T]`` in STANDARD_LEADS order."""
    return np.stack([leads[name] for name in STANDARD_LEADS])


def write_wfdb(
    directory: Path,
    record: str,
    channels: Mapping[str, np.ndarray],
    fs: float = 500.0,
    units: str | Sequence[str] = "mV",
    fmt: str = "16",
    adc_gain: float = 1000.0,
) -> Path:
    """Write ``channels`` (``{sig_name: values in units}``) with ``wfdb.wrsamp``; return the ``.hea`` path.

    ``adc_gain`` counts per unit (1 uV steps for mV) with baseline 0, so NaN survives as WFDB's
    invalid-sample value.
    """
    names = list(channels)
    signal = np.stack([np.asarray(channels[name], dtype=np.float64) for name in names], axis=1)  # [T, C]
    unit_list = [units] * len(names) if isinstance(units, str) else list(units)
    wfdb.wrsamp(
        record,
        fs=fs,
        units=unit_list,
        sig_name=names,
        p_signal=signal,
        fmt=[fmt] * len(names),
        adc_gain=[adc_gain] * len(names),
        baseline=[0] * len(names),
        write_dir=str(directory),
    )
    return directory / f"{record}.hea"


def write_csv(
    path: Path,
    channels: Mapping[str, np.ndarray],
    fs: float | None = 500.0,
    time_column: str | None = "time_s",
    delimiter: str = ",",
) -> Path:
    """CSV with a header row; ``time_column`` (``time_s``, ``time_ms``, ``t``...) in its unit, or none."""
    columns = dict(channels)
    n = len(next(iter(columns.values())))
    if time_column is not None and fs is not None:
        per_second = 1000.0 if "ms" in time_column else 1.0
        columns = {time_column: np.arange(n) / fs * per_second} | columns
    rows = [delimiter.join(columns)]
    body = np.stack([np.asarray(v, dtype=np.float64) for v in columns.values()], axis=1)  # [T, C]
    rows += [delimiter.join(f"{x:.6g}" for x in row) for row in body]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _channel(
    name: str, units: str, sensitivity: float, baseline: float, source: str, correction: float = 1.0
) -> Dataset:
    channel = Dataset()
    code, meaning = SCPECG_LEADS.get(name, ("", name))
    if source == "meaning":
        channel.ChannelSourceSequence = DicomSequence([_code(code or "0", "SCPECG", meaning)])
    elif source == "code":
        channel.ChannelSourceSequence = DicomSequence([_code(code, "SCPECG", "")])
    else:
        channel.ChannelLabel = name
    channel.ChannelSensitivity = f"{sensitivity:g}"
    channel.ChannelSensitivityUnitsSequence = DicomSequence([_code(units, "UCUM", units)])
    channel.ChannelSensitivityCorrectionFactor = f"{correction:g}"
    channel.ChannelBaseline = f"{baseline:g}"
    channel.ChannelSampleSkew = "0"
    channel.WaveformBitsStored = 16
    return channel


def multiplex_group(
    channels: Mapping[str, np.ndarray],
    fs: float,
    label: str = "RHYTHM",
    units: str = "uV",
    sensitivity: float = 1.0,
    baseline: float = 0.0,
    source: str = "meaning",
    padding: int | None = None,
    correction: float = 1.0,
) -> Dataset:
    """One Waveform Sequence item: 16-bit SS samples ``round((value - baseline) / (sensitivity * correction))``.

    ``channels`` are values in ``units``; NaN becomes ``padding`` (if given). ``source``: ``"meaning"``
    (SCP-ECG code + meaning), ``"code"`` (code only) or ``"label"`` (Channel Label only).
    """
    names = list(channels)
    values = np.stack([np.asarray(channels[n], dtype=np.float64) for n in names], axis=1)  # [T, C]
    counts = np.round((values - baseline) / (sensitivity * correction))
    counts = np.where(np.isnan(counts), padding if padding is not None else 0, counts).astype("<i2")
    group = Dataset()
    group.MultiplexGroupLabel = label
    group.WaveformOriginality = "ORIGINAL"
    group.NumberOfWaveformChannels = len(names)
    group.NumberOfWaveformSamples = values.shape[0]
    group.SamplingFrequency = f"{fs:g}"
    group.ChannelDefinitionSequence = DicomSequence(
        [_channel(n, units, sensitivity, baseline, source, correction) for n in names]
    )
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    if padding is not None:
        group.WaveformPaddingValue = np.array([padding], dtype="<i2").tobytes()
    group.WaveformData = counts.tobytes()  # interleaved C1S1, C2S1, ..., CnS1, C1S2, ...
    return group


def write_dicom_ecg(path: Path, groups: Sequence[Dataset], with_pixels: bool = False) -> Path:
    """A 12-Lead ECG Waveform Storage file holding ``groups`` (an image instead when ``with_pixels``)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = TWELVE_LEAD_ECG_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = TWELVE_LEAD_ECG_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "ECG"
    ds.PatientName = "Synthetic^Test"
    if groups:
        ds.WaveformSequence = DicomSequence(list(groups))
    if with_pixels:
        ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 4, 4, 8, 8, 7
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
        ds.PixelData = bytes(16)
    ds.save_as(path, enforce_file_format=True)
    return path


def standard_dicom_ecg(path: Path, fs: float = 500.0, n_samples: int = 5000, seed: int = 0) -> Path:
    """A cart-like DICOM ECG: a MEDIAN BEAT group first, then the 10 s RHYTHM group, values in uV."""
    leads = synthetic_ecg(n_samples, fs, seed)
    in_uv = {name: values * UV_PER_MV for name, values in leads.items()}
    median = {name: values[: int(fs)] * 0.5 for name, values in in_uv.items()}
    return write_dicom_ecg(path, [multiplex_group(median, fs, "MEDIAN BEAT"), multiplex_group(in_uv, fs)])
