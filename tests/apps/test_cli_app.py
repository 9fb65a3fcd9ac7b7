"""``medclr app``: checks the run before starting Streamlit, then runs ``python -m streamlit run apps/medclr_app.py``
with Streamlit's own flags passed on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from medclr.cli import main
from tests.apps.conftest import APP


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def fake_call(cmd: list[str], **kwargs: Any) -> int:
        seen.append({"cmd": cmd, **kwargs})
        return 0

    monkeypatch.setattr(subprocess, "call", fake_call)
    return seen


def test_invalid_run_dir_is_one_line_and_starts_nothing(tmp_path: Path, calls: list[dict[str, Any]],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["app", "--run", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such folder" in err and "--run" in err
    assert main(["app", "--run", str(tmp_path)]) == 2
    assert "not a trained medclr run (missing config.yaml" in capsys.readouterr().err
    assert calls == []


def test_bad_index_is_refused_before_streamlit(trained_run: Path, tmp_path: Path, calls: list[dict[str, Any]],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["app", "--run", str(trained_run), "--index", str(tmp_path)]) == 2
    assert "not a medclr index" in capsys.readouterr().err and calls == []


def test_starts_streamlit_with_forwarded_server_flags(trained_run: Path, app_index: Path,
                                                      calls: list[dict[str, Any]]) -> None:
    argv = ["app", "--run", str(trained_run), "--index", str(app_index), "--server.port", "8765",
            "--server.address=127.0.0.1"]
    assert main(argv) == 0
    (call,) = calls
    cmd = call["cmd"]
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(APP)]
    assert cmd[5:8] == ["--server.port", "8765", "--server.address=127.0.0.1"]
    assert cmd[8:] == ["--", "--run", str(trained_run.resolve()), "--index", str(app_index.resolve())]
    assert call["cwd"] == APP.parents[1] and (APP.parents[1] / ".streamlit" / "config.toml").is_file()
    assert call["env"]["MEDCLR_RUN"] == str(trained_run.resolve())


def test_unknown_flags_are_rejected(trained_run: Path, calls: list[dict[str, Any]]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["app", "--run", str(trained_run), "--bogus", "1"])
    assert exc.value.code == 2 and calls == []


def test_hardened_streamlit_config() -> None:
    import tomllib

    config = tomllib.loads((APP.parents[1] / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none" and config["browser"]["gatherUsageStats"] is False
    assert config["server"]["enableXsrfProtection"] is True and config["server"]["headless"] is True
    assert config["server"]["maxUploadSize"] == 50
