"""App fixtures: the tiny trained run of tests/eval (reused) and its retrieval index, built once per session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.eval.conftest import trained_run  # noqa: F401 - re-exported fixture
from tests.models.conftest import tiny_bert_dir  # noqa: F401 - re-exported fixture
from tests.train.conftest import cache_root, world_manifest  # noqa: F401 - re-exported fixtures

APP = Path(__file__).resolve().parents[2] / "apps" / "medclr_app.py"


@pytest.fixture(autouse=True)
def _restore_main_module() -> Iterator[None]:
    """Streamlit's script runner replaces ``sys.modules["__main__"]`` with the app script and leaves it there;
    a later test in the same worker that starts processes with the ``spawn`` method (torch.distributed tests)
    would then re-run the app in each child. Put the real ``__main__`` back after every app test."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def app_index(trained_run: Path, world_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """``medclr embed`` + ``medclr index`` of the tiny world with the tiny run (every split)."""
    from medclr.cli import main

    folder = tmp_path_factory.mktemp("app_index")
    embeddings = folder / "emb.parquet"
    assert main(["embed", str(trained_run), "--manifest", str(world_manifest), "--out", str(embeddings)]) == 0
    assert main(["index", str(embeddings), "--out", str(folder / "index")]) == 0
    return folder / "index"


@pytest.fixture(scope="session")
def real_dicom(real_data: Path) -> Path:
    """The real SIIM chest radiograph (its file name is its SOP Instance UID)."""
    return next((real_data / "siim_dicom").glob("*.dcm"))


@pytest.fixture(scope="session")
def ptbxl_record(real_data: Path) -> tuple[Path, Path]:
    """A real PTB-XL record: (.hea, .dat), 12 leads at 500 Hz for 10 s."""
    header = real_data / "ptbxl" / "records500" / "00000" / "00001_hr.hea"
    return header, header.with_suffix(".dat")
