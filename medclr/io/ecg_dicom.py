"""DICOM waveform ECGs (12-Lead ECG / General ECG Waveform Storage) -> :class:`RawEcg`.

A DICOM ECG stores its samples in the Waveform Sequence (5400,0100). Each item is a *multiplex group*: a
set of channels sampled together at one ``SamplingFrequency``, interleaved in ``WaveformData`` as 16-bit
signed integers (``C1S1, C2S1, ..., CnS1, C1S2, ...``). Devices typically write two groups: the 10 s rhythm
(``MultiplexGroupLabel`` "RHYTHM") and a representative "MEDIAN BEAT" of about one second;
:func:`choose_multiplex_group` takes the rhythm, i.e. the longest group that is not a median/average beat.

Each channel of the Channel Definition Sequence says which lead it is (Channel Source Sequence: SCP-ECG or
MDC codes of DICOM CID 3001 with meanings such as "Lead I (Einthoven)") and how to calibrate it:
``value = raw * ChannelSensitivity * ChannelSensitivityCorrectionFactor + ChannelBaseline`` in the units of
the Channel Sensitivity Units Sequence (UCUM, usually ``uV``). :meth:`pydicom.Dataset.waveform_array`
applies exactly that and leaves the units alone; :func:`medclr.io.read_ecg` converts them to mV. Samples
equal to ``WaveformPaddingValue`` are gaps and become NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.waveforms.numpy_handler import WAVEFORM_DTYPES, multiplex_array

from medclr.errors import MedclrInputError
from medclr.io.ecg_raw import RawEcg, resolve_fs
from medclr.io.leads import parse_lead

_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_BEAT_WORDS = ("MEDIAN", "REPRESENTATIVE", "AVERAGE")  # labels of a one-beat summary, not the recording
_CODED_LEAD_SCHEMES = frozenset({"SCPECG", "MDC"})
_FIX_CORRUPT = "re-export the ECG from the cart or PACS as 12-Lead ECG Waveform Storage"


def read_dicom_ecg(path: Path, fs: float | None) -> RawEcg:
    """Read the rhythm multiplex group of a DICOM ECG: channels ``[C, T]`` in their sensitivity units."""
    try:
        ds = pydicom.dcmread(path, force=True)
    # broad on purpose (library boundary): pydicom raises many types (struct.error, EOFError, ...) on bad files
    except Exception as exc:
        raise MedclrInputError(path, f"unreadable DICOM ({type(exc).__name__}: {exc})", _FIX_CORRUPT) from exc
    try:
        return _read_dataset(path, ds, fs)
    except MedclrInputError:
        raise
    # broad on purpose (library boundary): pydicom decodes elements lazily, a corrupt one raises on first access
    except Exception as exc:
        raise MedclrInputError(path, f"corrupt DICOM waveform ({type(exc).__name__}: {exc})", _FIX_CORRUPT) from exc


def _read_dataset(path: Path, ds: Dataset, fs: float | None) -> RawEcg:
    groups = list(ds.get("WaveformSequence") or [])
    if not groups:
        if any(tag in ds for tag in _PIXEL_TAGS):
            raise MedclrInputError(
                path, "this DICOM holds an image, not an ECG waveform", "read it with medclr.io.read_cxr"
            )
        raise MedclrInputError(path, "DICOM has no Waveform Sequence (5400,0100)", _FIX_CORRUPT)
    index = choose_multiplex_group(groups)
    group = groups[index]
    channels = list(group.get("ChannelDefinitionSequence") or [])
    signal = _calibrated_samples(path, ds, index, group, len(channels))  # [T, C]
    rate = resolve_fs(path, _sampling_frequency(group), fs, "the DICOM SamplingFrequency")
    names = [channel_names(channel, i) for i, channel in enumerate(channels)]
    return RawEcg(
        names=tuple(display for display, _lead in names),
        lead_names=tuple(lead for _display, lead in names),
        units=tuple(_channel_units(channel) for channel in channels),
        signal=np.ascontiguousarray(signal.T),  # [C, T]
        fs=rate,
    )


def choose_multiplex_group(groups: Sequence[Dataset]) -> int:
    """Index of the group to read: not a median beat, most standard leads, labelled RHYTHM, most samples."""

    def rank(index: int) -> tuple[bool, int, bool, int]:
        group = groups[index]
        label = str(group.get("MultiplexGroupLabel", "") or "").upper()
        channels = group.get("ChannelDefinitionSequence") or []
        names = [channel_names(channel, i)[1] for i, channel in enumerate(channels)]
        leads = {match.lead for match in map(parse_lead, names) if match is not None}
        n_samples = int(group.get("NumberOfWaveformSamples", 0) or 0)
        return not any(word in label for word in _BEAT_WORDS), len(leads), "RHYTHM" in label, n_samples

    return max(range(len(groups)), key=rank)


def channel_names(channel: Dataset, index: int) -> tuple[str, str]:
    """``(display name, name to match)`` of a channel: its code meaning, its CID 3001 code, or its label.

    The Channel Source code meaning (``Lead I (Einthoven)``) is shown; the lead is matched by the meaning
    unless the SCP-ECG / MDC code value names a lead and the meaning does not name the same one. Without a
    Channel Source Sequence the Channel Label (``I``) is used for both.
    """
    label = str(channel.get("ChannelLabel", "") or "").strip()
    sources = channel.get("ChannelSourceSequence") or []
    if not sources:
        name = label or f"channel {index + 1}"
        return name, name
    source = sources[0]
    meaning = str(source.get("CodeMeaning", "") or "").strip()
    code = str(source.get("CodeValue", "") or "").strip()
    scheme = str(source.get("CodingSchemeDesignator", "") or "").strip().upper()
    display = meaning or code or label or f"channel {index + 1}"
    by_code = parse_lead(code) if scheme in _CODED_LEAD_SCHEMES else None
    if by_code is not None and parse_lead(meaning) != by_code:
        return display, code
    return display, meaning or display


def _channel_units(channel: Dataset) -> str:
    """UCUM code (``uV``) of the Channel Sensitivity Units, else its meaning; ``""`` if uncalibrated."""
    units = channel.get("ChannelSensitivityUnitsSequence") or []
    if "ChannelSensitivity" not in channel or not units:
        return ""
    return str(units[0].get("CodeValue", "") or units[0].get("CodeMeaning", "") or "").strip()


def _sampling_frequency(group: Dataset) -> float | None:
    value = group.get("SamplingFrequency")
    return None if value is None or value == "" else float(value)


def _calibrated_samples(path: Path, ds: Dataset, index: int, group: Dataset, n_defined: int) -> np.ndarray:
    """``[T, C]`` float64 samples in sensitivity units; padding samples NaN. Sizes are checked first."""
    bits = int(group.get("WaveformBitsAllocated", 0) or 0)
    interpretation = str(group.get("WaveformSampleInterpretation", "") or "")
    if (bits, interpretation) not in WAVEFORM_DTYPES:
        raise MedclrInputError(path, f"unsupported waveform samples ({bits} bits, {interpretation!r})", _FIX_CORRUPT)
    n_channels = int(group.get("NumberOfWaveformChannels", 0) or 0)
    n_samples = int(group.get("NumberOfWaveformSamples", 0) or 0)
    data = group.get("WaveformData") or b""
    expected = n_channels * n_samples * bits // 8
    if n_channels < 1 or n_samples < 1 or n_channels != n_defined or len(data) < expected:
        raise MedclrInputError(
            path,
            f"waveform group {index} is inconsistent: {n_channels} channels ({n_defined} defined) x {n_samples} "
            f"samples need {expected} bytes, WaveformData has {len(data)}",
            _FIX_CORRUPT,
        )
    signal = np.asarray(ds.waveform_array(index), dtype=np.float64)  # [T, C]
    padding = group.get("WaveformPaddingValue")
    if padding is not None and len(padding) >= bits // 8:
        dtype = np.dtype(WAVEFORM_DTYPES[(bits, interpretation)])
        pad_value = np.frombuffer(bytes(padding[: bits // 8]), dtype=dtype)[0]
        signal[multiplex_array(ds, index, as_raw=True) == pad_value] = np.nan
    return signal
