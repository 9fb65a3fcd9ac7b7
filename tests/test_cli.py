"""The command line: every [contract] subcommand is registered, errors are one line, exit codes are non-zero."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medclr.cli import build_parser, main

CONTRACT_COMMANDS = ["synth", "prepare", "train", "eval", "embed", "index", "app", "demo"]


def _subcommands() -> set[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    return set(actions[0].choices)  # type: ignore[arg-type]


def test_every_contract_command_is_registered() -> None:
    assert set(CONTRACT_COMMANDS) <= _subcommands()


@pytest.mark.parametrize("command", [*CONTRACT_COMMANDS, "inspect"])
def test_help_documents_every_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"medclr {command}" in out and "--help" in out
    assert "%%" not in out  # argparse does not %-format descriptions and epilogs: a literal % stays single


def test_prepare_sources_match_the_registry() -> None:
    import medclr.data.sources  # noqa: F401 - registers the adapters
    from medclr.cli import PREPARE_SOURCES
    from medclr.data.prepare import SOURCES

    assert set(SOURCES.names()) == set(PREPARE_SOURCES)


def test_grounding_map_choices_are_the_readouts() -> None:
    from medclr.eval.grounding_maps import MAP_READOUTS

    eval_parser = next(a for a in build_parser()._actions if a.dest == "command").choices["eval"]  # type: ignore[index]
    readout = next(a for a in eval_parser._actions if a.dest == "grounding_map")
    assert tuple(readout.choices) == MAP_READOUTS and readout.default == "cosine"  # MS-CXR's protocol


def test_grounding_smooth_takes_a_sigma_and_refuses_a_negative_one(capsys: pytest.CaptureFixture[str]) -> None:
    from medclr.eval.grounding_maps import BIOVIL_SMOOTHING_SIGMA

    parser = build_parser()
    base = ["eval", "runs/x", "--task", "grounding", "--manifest", "m.parquet"]
    assert parser.parse_args(base).grounding_smooth == 0.0  # PROTOCOLS.md's map: no blur
    assert parser.parse_args([*base, "--grounding-smooth", "1.5"]).grounding_smooth == BIOVIL_SMOOTHING_SIGMA
    for bad in ("-1", "inf", "nan", "wide"):
        with pytest.raises(SystemExit):
            parser.parse_args([*base, "--grounding-smooth", bad])
        assert "expected a finite number >= 0" in capsys.readouterr().err


def test_prepare_missing_root_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", "ptbxl", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "m.parquet")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope" in err and "ptbxl_database.csv" in err


def test_inspect_prints_metadata_of_real_files(real_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ecg = real_data / "cinc2021" / "E07500.hea"
    png = real_data / "nih_chestxray14" / "images" / "00000001_000.png"
    assert main(["inspect", str(ecg), str(png)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["kind"] for r in lines] == ["ecg", "cxr"]
    assert lines[0]["shape"] == [12, 5000] and lines[0]["fs"] == 500.0
    assert lines[1]["shape"] == [1024, 1024] and 0.0 <= lines[1]["min"] <= lines[1]["max"] <= 1.0


def test_bad_input_is_one_line_without_traceback(real_data: Path, tmp_path: Path) -> None:
    junk = tmp_path / "scan.dcm"
    junk.write_bytes(b"definitely not a DICOM file")
    holter = real_data / "wfdb_samples" / "100.hea"  # MIT-BIH: 2 leads, not a 12-lead ECG
    proc = subprocess.run(
        [sys.executable, "-m", "medclr", "inspect", str(junk), str(holter)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr
    assert all(line.startswith("medclr: error: ") for line in lines)
    assert "Traceback" not in proc.stderr
    assert "scan.dcm" in lines[0] and "100" in lines[1]


def test_import_medclr_stays_light() -> None:
    code = (
        "import sys, medclr; "
        "print(sorted({'torch', 'streamlit', 'faiss', 'tensorboard', 'matplotlib'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
