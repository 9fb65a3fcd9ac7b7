"""Typed errors that tell the user what went wrong, where, and what to do.

Every error a user can cause (a bad file, a wrong flag, a missing dataset root) is a subclass of
:class:`MedclrError`. The CLI prints such errors as one line and exits non-zero; anything else is a bug.
"""

from __future__ import annotations

from os import PathLike


class MedclrError(Exception):
    """Base of every error medclr raises on purpose."""


class MedclrInputError(MedclrError, ValueError):
    """Input data (a file, a record, a report) that medclr cannot use.

    The message names the offending file and says what to do, e.g.
    ``ECG record 'x.hea': 8 leads; expected the 12 standard leads (missing: V1, V2, V3, V4). Fix: ...``.
    """

    def __init__(self, path: str | PathLike[str] | None, problem: str, fix: str = "") -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        self.fix = fix
        where = f"{self.path}: " if self.path else ""
        tail = f" Fix: {fix}" if fix else ""
        super().__init__(f"{where}{problem}.{tail}" if not problem.endswith(".") else f"{where}{problem}{tail}")


class MedclrNotImplementedError(MedclrError):
    """A command of the [contract] command line whose implementation has not landed yet."""
