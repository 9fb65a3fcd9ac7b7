"""medclr: chest X-ray, 12-lead ECG and clinical report encoders in one embedding space.

``import medclr`` stays light: the readers live in :mod:`medclr.io` (numpy, pydicom, wfdb; no torch), models and
training import torch when first used.
"""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING

__version__ = "0.1.0"

from medclr import io
from medclr.errors import MedclrError, MedclrInputError

if TYPE_CHECKING:
    from medclr.models import MedClr

__all__ = ["MedclrError", "MedclrInputError", "__version__", "io", "load_model"]


def load_model(run_dir: str | PathLike[str], checkpoint: str = "best", device: str = "cpu") -> MedClr:
    """The trained :class:`~medclr.models.MedClr` of a run directory (``medclr train`` output), in eval mode.

    ``checkpoint``: ``best`` (by the validation metric; the latest when no validation ran), ``latest``, or a
    folder name such as ``step_000200``. Rebuilt from the run's ``model.yaml`` (a frozen text base is loaded from
    its recorded source) and checked key by key against the saved weights. Imports torch on first call only.
    """
    from medclr.train.checkpoint import load_model as _load

    model: MedClr = _load(run_dir, checkpoint=checkpoint, device=device)
    return model
