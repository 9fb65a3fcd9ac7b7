"""One adapter per dataset, each registered in :data:`medclr.data.prepare.SOURCES` on import."""

from medclr.data.sources import (
    chexpert,
    cinc2021,
    files,
    mimic_cxr,
    mimic_iv_ecg,
    mimic_paired,
    ms_cxr,
    nih_cxr14,
    openi,
    ptbxl,
    synth,
)

__all__ = [
    "chexpert",
    "cinc2021",
    "files",
    "mimic_cxr",
    "mimic_iv_ecg",
    "mimic_paired",
    "ms_cxr",
    "nih_cxr14",
    "openi",
    "ptbxl",
    "synth",
]
