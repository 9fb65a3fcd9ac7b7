"""medclr: chest X-ray, 12-lead ECG and clinical report encoders in one embedding space.

``import medclr`` stays light: the readers live in :mod:`medclr.io` (numpy, pydicom, wfdb; no torch), models and
training import torch when first used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from medclr import io
from medclr.errors import MedclrError, MedclrInputError

__all__ = ["MedclrError", "MedclrInputError", "__version__", "io"]
