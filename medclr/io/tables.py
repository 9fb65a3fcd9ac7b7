"""CSV tables of the datasets (metadata, labels, splits), read with errors that name the file and the columns."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import pandas as pd

from medclr.errors import MedclrInputError


def read_table(path: str | PathLike[str], what: str, required: Sequence[str], **kwargs: Any) -> pd.DataFrame:
    """``pandas.read_csv`` whose failures are :class:`MedclrInputError` naming the file and the columns.

    ``what`` names the table for the message (e.g. ``"PTB-XL database (ptbxl_database.csv)"``); ``required``
    columns must all be present. ``kwargs`` go to :func:`pandas.read_csv` (``.gz`` is decompressed by pandas).
    """
    expected = ", ".join(required)
    if not Path(path).is_file():
        raise MedclrInputError(path, f"{what} not found", f"pass the path of the {what} (columns: {expected})")
    try:
        frame = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError, EOFError) as err:
        raise MedclrInputError(path, f"cannot read {what} as CSV ({err})", f"expected columns: {expected}") from err
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise MedclrInputError(path, f"{what} lacks column(s) {', '.join(missing)}", f"expected columns: {expected}")
    return frame
