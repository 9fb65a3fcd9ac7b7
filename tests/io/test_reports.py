"""medclr.io.reports and medclr.io.report_sources: sections, placeholders, dataset report tables."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from medclr.errors import MedclrInputError
from medclr.io.report_sources import (
    MACHINE_REPORT_COLUMNS,
    load_scp_statements,
    machine_report_text,
    parse_scp_codes,
    ptbxl_report_text,
    ptbxl_statement_text,
    read_indiana_reports,
    read_machine_reports,
)
from medclr.io.reports import clean_report_text, has_report_content, parse_sections, report_text

# A MIMIC-CXR style report as the database stores it: title line, one-space indents, " " blank lines,
# headings in capitals, text on the heading line or below it, lines wrapped at ~78 characters.
MIMIC_REPORT = "\n".join(
    [
        "                                 FINAL REPORT",
        " EXAMINATION:  CHEST (PA AND LAT)",
        " ",
        " INDICATION:  ___F with cough and fever x 3 days, history of ___ cancer  // eval",
        " for pneumonia",
        " ",
        " TECHNIQUE:  Chest PA and lateral",
        " ",
        " COMPARISON:  Chest radiograph ___.",
        " ",
        " FINDINGS: ",
        " ",
        " Heart size is normal.  The mediastinal and hilar contours are unremarkable.",
        " There is new patchy opacity in the right lower lobe concerning for",
        " pneumonia.  No pleural effusion or pneumothorax is seen.",
        " LINES/TUBES:  None.",
        " ",
        " IMPRESSION: ",
        " ",
        " Right lower lobe pneumonia.  Recommend follow-up radiographs after",
        " treatment.",
        " ",
        " NOTIFICATION:  The findings were discussed with Dr. ___ by Dr. ___ on the",
        " telephone on ___ at 4:10 PM, 2 minutes after discovery.",
        "",
    ]
)

MIMIC_FINDINGS = (
    "Heart size is normal. The mediastinal and hilar contours are unremarkable. There is new patchy opacity in "
    "the right lower lobe concerning for pneumonia. No pleural effusion or pneumothorax is seen. LINES/TUBES: None."
)
MIMIC_IMPRESSION = "Right lower lobe pneumonia. Recommend follow-up radiographs after treatment."


# --- parse_sections ---------------------------------------------------------------------------------------


def test_parse_sections_mimic_layout() -> None:
    sections = parse_sections(MIMIC_REPORT)
    assert list(sections) == [
        "examination",
        "indication",
        "technique",
        "comparison",
        "findings",
        "impression",
        "notification",
    ]
    assert sections["examination"] == "CHEST (PA AND LAT)"
    assert sections["indication"] == "___F with cough and fever x 3 days, history of ___ cancer // eval for pneumonia"
    assert sections["comparison"] == "Chest radiograph ___."
    assert sections["findings"] == MIMIC_FINDINGS
    assert sections["impression"] == MIMIC_IMPRESSION
    assert sections["notification"].endswith("on ___ at 4:10 PM, 2 minutes after discovery.")


def test_parse_sections_crlf_equals_lf() -> None:
    assert parse_sections(MIMIC_REPORT.replace("\n", "\r\n")) == parse_sections(MIMIC_REPORT)


@pytest.mark.parametrize(
    ("heading", "key"),
    [
        ("CONCLUSION:", "impression"),
        ("FINDINGS AND IMPRESSION:", "impression"),
        ("FINDINGS/IMPRESSION:", "impression"),
        ("IMPRESSON:", "impression"),
        ("Impression:", "impression"),
        ("findings:", "findings"),
        ("CLINICAL HISTORY:", "history"),
        ("HISTORY:", "history"),
        ("REASON FOR EXAMINATION:", "indication"),
        ("COMPARISONS:", "comparison"),
        ("RECOMMENDATION(S):", "recommendations"),
        ("WET READ:", "wet_read"),
        ("NOTIFICATION:", "notification"),
        ("PA AND LATERAL VIEWS OF THE CHEST:", "findings"),
        ("ADDENDUM:", "addendum"),
        ("OTHER VIEWS:", "other_views"),
    ],
)
def test_heading_synonyms(heading: str, key: str) -> None:
    assert parse_sections(f"TECHNIQUE: PA.\n {heading}  The text\n of it.\n") == {
        "technique": "PA.",
        key: "The text of it.",
    }


def test_text_before_first_heading_is_preamble_and_final_report_title_dropped() -> None:
    text = "Portable study.\n FINAL REPORT\n Compared to prior.\n FINDINGS: Clear lungs."
    assert parse_sections(text) == {"preamble": "Portable study.\n\nCompared to prior.", "findings": "Clear lungs."}


def test_headings_only_at_line_start_and_other_headings_in_capitals() -> None:
    text = "FINDINGS: See the impression: nothing new.\n Dr. Smith: was paged.\n Note: stable."
    assert parse_sections(text) == {"findings": "See the impression: nothing new. Dr. Smith: was paged. Note: stable."}


def test_unknown_capitals_heading_outside_findings_is_its_own_section() -> None:
    text = "INDICATION: Fever.\n PRIOR STUDIES: None.\n FINDINGS: Clear."
    assert parse_sections(text) == {"indication": "Fever.", "prior_studies": "None.", "findings": "Clear."}


def test_repeated_heading_texts_joined_and_empty_sections_left_out() -> None:
    text = "CHEST, PA LATERAL:\n\n INDICATION: Cough.\n FINDINGS: Left clear.\n COMPARISON:\n FINDINGS: Right clear."
    assert parse_sections(text) == {"indication": "Cough.", "findings": "Left clear.\n\nRight clear."}


def test_last_paragraph_without_findings_or_impression() -> None:
    text = " FINAL REPORT\n HISTORY: Dyspnea.\n \n PA and lateral views were obtained.\n \n No acute process.\n"
    assert parse_sections(text) == {
        "history": "Dyspnea.",
        "last_paragraph": "PA and lateral views were obtained.\n\nNo acute process.",
    }


def test_parse_sections_empty_and_wrong_type() -> None:
    assert parse_sections("") == {}
    assert parse_sections(" \n FINAL REPORT\n ") == {}
    with pytest.raises(MedclrInputError, match="s1: report text is float"):
        parse_sections(math.nan, source="s1")  # type: ignore[arg-type]


# --- report_text ------------------------------------------------------------------------------------------


def test_report_text_findings_then_impression() -> None:
    sections = parse_sections(MIMIC_REPORT)
    assert report_text(sections) == f"{MIMIC_FINDINGS} {MIMIC_IMPRESSION}"
    assert report_text(sections, prefer=("impression",)) == MIMIC_IMPRESSION
    assert report_text(sections, headings=True) == f"FINDINGS: {MIMIC_FINDINGS} IMPRESSION: {MIMIC_IMPRESSION}"


def test_report_text_cleans_and_ends_parts_with_full_stop() -> None:
    sections = {"findings": "Dr. ___ saw\n\n no effusion", "impression": "Normal chest ___"}
    assert report_text(sections) == "Dr. saw no effusion. Normal chest."
    assert report_text(sections, placeholder="[deid]") == "Dr. [deid] saw no effusion. Normal chest [deid]."


def test_report_text_skips_placeholder_only_section() -> None:
    assert report_text({"findings": "___ ___.", "impression": "No pneumonia."}) == "No pneumonia."


def test_report_text_fallbacks() -> None:
    text = " FINAL REPORT\n HISTORY: Dyspnea.\n \n PA and lateral views.\n \n No acute process.\n"
    assert report_text(parse_sections(text)) == "PA and lateral views. No acute process."
    assert report_text(parse_sections("Lungs are clear.\n No effusion.")) == "Lungs are clear. No effusion."
    assert report_text({"indication": "Cough.", "wet_read": "No pneumonia"}) == "No pneumonia."


def test_report_text_without_body_raises_naming_source() -> None:
    with pytest.raises(MedclrInputError, match=r"s42: report has no findings.*indication, comparison"):
        report_text({"indication": "Cough.", "comparison": "None."}, source="s42")
    with pytest.raises(MedclrInputError, match="sections: none"):
        report_text({})


# --- clean_report_text ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "removed", "substituted"),
    [
        ("Dr. ___ was notified at ___ pm.", "Dr. was notified at pm.", "Dr. [deid] was notified at [deid] pm."),
        ("___F with cough", "F with cough", "[deid]F with cough"),
        ("A ___-year-old man.", "A year-old man.", "A [deid]-year-old man."),
        ("Called on ___/___ at ___:___.", "Called on at.", "Called on [deid] at [deid]."),
        (
            "There are no XXXX of a pleural effusion.",
            "There are no of a pleural effusion.",
            "There are no [deid] of a pleural effusion.",
        ),
        ("Dr. XXXX's XXXX was called.", "Dr. was called.", "Dr. [deid]'s [deid] was called."),
        ("Inferior XXXX XXXX XXXX.", "Inferior.", "Inferior [deid]."),
        ("Chest XXXX, XXXX at XXXX hours ", "Chest, at hours", "Chest [deid], [deid] at [deid] hours"),
        ("No XXXX (XXXX) seen, ., ok", "No seen. ok", "No [deid] ([deid]) seen. ok"),
        ("abnormality. .", "abnormality.", "abnormality."),
        ("  Heart\n\tnormal  .  ", "Heart normal.", "Heart normal."),
        ("effusion.Heart is normal", "effusion. Heart is normal", "effusion. Heart is normal"),
        ("[&lt;Heart normal.&gt;] Old<BR>granuloma", "Heart normal. Old granuloma", "Heart normal. Old granuloma"),
        ("[Vascularity normal>]. No edema.", "Vascularity normal. No edema.", "Vascularity normal. No edema."),
    ],
)
def test_clean_report_text(raw: str, removed: str, substituted: str) -> None:
    assert clean_report_text(raw) == removed
    assert clean_report_text(raw, placeholder="[deid]") == substituted
    assert clean_report_text(removed) == removed


@pytest.mark.parametrize(
    "raw", ["", "   \n ", "___", "XXXX XXXX.", "FINDINGS: ___\n IMPRESSION:", "1. 2.", "FINAL REPORT", "&nbsp;"]
)
def test_clean_report_text_empty_raises(raw: str) -> None:
    with pytest.raises(MedclrInputError, match=r"^rec-7: empty report"):
        clean_report_text(raw, source="rec-7")
    with pytest.raises(MedclrInputError):
        clean_report_text(raw, placeholder="[deid]")
    assert has_report_content(raw) == (raw == "&nbsp;")  # raw entities are only resolved by cleaning


# --- Indiana / Open-i -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def indiana_csv(real_data: Path) -> Path:
    return real_data / "indiana_reports" / "indiana_reports.csv"


@pytest.fixture(scope="module")
def indiana(indiana_csv: Path) -> pd.DataFrame:
    return read_indiana_reports(indiana_csv)


def test_indiana_all_reports_parse(indiana: pd.DataFrame) -> None:
    reports = indiana
    assert len(reports) == 3851
    assert list(reports.columns) == [
        "uid",
        "MeSH",
        "Problems",
        "image",
        "indication",
        "comparison",
        "findings",
        "impression",
        "text",
        "empty",
    ]
    assert reports["empty"].dtype == bool
    assert not reports["text"].str.contains(r"X{4,}|  |^\s|\s$", regex=True).any()
    assert reports.loc[~reports["empty"], "text"].str.len().gt(0).all()
    assert reports.loc[reports["empty"], "text"].eq("").all()
    first = reports.set_index("uid").loc[1, "text"]
    assert first.startswith("The cardiac silhouette and mediastinum size are within normal limits.")
    assert first.endswith(
        "There are no of a pleural effusion. There is no evidence of pneumothorax. Normal chest x-ray."
    )


def test_indiana_empty_count_matches_independent_pandas(indiana_csv: Path, indiana: pd.DataFrame) -> None:
    raw = pd.read_csv(indiana_csv)
    joined = raw["findings"].fillna("") + " " + raw["impression"].fillna("")
    expected = (~joined.str.replace("XXXX", "", regex=False).str.contains("[A-Za-z]", regex=True)).sum()
    reports = indiana
    assert reports["empty"].sum() == expected == 25
    assert (reports["comparison"] == "None").sum() == 567  # kept as text, not read as NaN


def test_indiana_errors(tmp_path: Path) -> None:
    with pytest.raises(MedclrInputError, match=r"not found.*uid, findings, impression"):
        read_indiana_reports(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("uid,findings\n1,Clear.\n")
    with pytest.raises(MedclrInputError, match=r"lacks column\(s\) impression.*expected columns: uid, findings"):
        read_indiana_reports(bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(MedclrInputError, match="cannot read"):
        read_indiana_reports(empty)


# --- PTB-XL -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def statements(real_data: Path) -> pd.DataFrame:
    return load_scp_statements(real_data / "ptbxl" / "scp_statements.csv")


@pytest.fixture(scope="module")
def ptbxl(real_data: Path) -> pd.DataFrame:
    return pd.read_csv(real_data / "ptbxl" / "ptbxl_database.csv", index_col="ecg_id")


def test_load_scp_statements(statements: pd.DataFrame) -> None:
    assert statements.shape == (71, 12)
    assert statements.index.name == "scp_code"
    assert {"NORM", "LVOLT", "SR", "AFIB"} <= set(statements.index)
    assert statements.loc["NORM", "description"] == "normal ECG"
    assert statements.loc["SR", "rhythm"] == 1.0


def test_load_scp_statements_errors(tmp_path: Path) -> None:
    bad = tmp_path / "scp.csv"
    bad.write_text(",description,diagnostic\nNORM,normal ECG,1.0\n")
    with pytest.raises(MedclrInputError, match=r"lacks column.*form, rhythm.*expected columns: description"):
        load_scp_statements(bad)
    bad.write_text(
        ",description,diagnostic,form,rhythm,diagnostic_class,diagnostic_subclass\n"
        "SR,sinus rhythm,,,1.0,,\nSR,sinus rhythm,,,1.0,,\n"
    )
    with pytest.raises(MedclrInputError, match="listed twice: SR"):
        load_scp_statements(bad)


def test_ptbxl_statement_text_all_rows(ptbxl: pd.DataFrame, statements: pd.DataFrame) -> None:
    texts = {
        i: ptbxl_statement_text(codes, statements, source=f"ecg_id {i}") for i, codes in ptbxl["scp_codes"].items()
    }
    assert len(texts) == 500
    assert all(re.search("[a-z]", t) and t.endswith(".") for t in texts.values())


def test_ptbxl_statement_text_ecg_1(ptbxl: pd.DataFrame, statements: pd.DataFrame) -> None:
    assert ptbxl.loc[1, "scp_codes"] == "{'NORM': 100.0, 'LVOLT': 0.0, 'SR': 0.0}"
    text = ptbxl_statement_text(ptbxl.loc[1, "scp_codes"], statements)
    for code in ("NORM", "LVOLT", "SR"):
        assert statements.loc[code, "description"] in text
    assert text == "normal ECG. low QRS voltages in the frontal and horizontal leads. sinus rhythm."


def test_ptbxl_statement_order_likelihood_then_category(statements: pd.DataFrame) -> None:
    codes = {"SR": 0.0, "LVOLT": 0.0, "IMI": 0.0, "AFIB": 50.0, "NORM": 15.0}
    assert ptbxl_statement_text(codes, statements) == (
        "atrial fibrillation. normal ECG. inferior myocardial infarction. "
        "low QRS voltages in the frontal and horizontal leads. sinus rhythm."
    )


def test_ptbxl_statement_text_errors(statements: pd.DataFrame) -> None:
    with pytest.raises(MedclrInputError, match=r"ecg_id 9: unknown SCP code\(s\) 'FOO'.*71 codes"):
        ptbxl_statement_text({"NORM": 100.0, "FOO": 0.0}, statements, source="ecg_id 9")
    with pytest.raises(MedclrInputError, match="empty scp_codes"):
        ptbxl_statement_text("{}", statements)
    with pytest.raises(MedclrInputError, match="likelihood of 'NORM' is 'high'"):
        ptbxl_statement_text({"NORM": "high"}, statements)  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "cell",
    [
        "",
        "NORM",
        "{'NORM': 100.0",
        "['NORM']",
        "{'NORM'}",
        "{1: 100.0}",
        "{'NORM': 'high'}",
        "{'NORM': True}",
        "{'NORM': 101.0}",
        "{'NORM': -1}",
        "{'NORM': float('nan')}",
        "{'': 0.0}",
        "__import__('os')",
    ],
)
def test_parse_scp_codes_rejects(cell: str) -> None:
    with pytest.raises(MedclrInputError, match=r"^ecg_id 3: scp_codes"):
        parse_scp_codes(cell, source="ecg_id 3")


def test_parse_scp_codes_accepts() -> None:
    assert parse_scp_codes(" {'NORM': 100, 'SR': 0.0} ") == {"NORM": 100.0, "SR": 0.0}
    assert parse_scp_codes("{}") == {}
    with pytest.raises(MedclrInputError, match="is float"):
        parse_scp_codes(math.nan)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (
            "sinusrhythmus  mÄssige amplitudenkriterien f#r linkshypertrophie ",
            "sinusrhythmus mässige amplitudenkriterien für linkshypertrophie",
        ),
        ("sinusrhythmus r-s #bergang in v ableitungen", "sinusrhythmus r-s übergang in v ableitungen"),
        ("2:1 Überleitung bei vorhofflattern", "2:1 überleitung bei vorhofflattern"),
        ("sinusrytm st-t sÄnkning, sÅsom vid", "sinusrytm st-t sänkning, såsom vid"),
        ("kurzer schweiáausbruch", "kurzer schweißausbruch"),
        ("sinusrytm     ó¿    ó¬ st-t", "sinusrytm st-t"),
        (
            "sinus rhythm. normal ecg. Edit: NORM 100, (NORM 100)",
            "sinus rhythm. normal ecg. Edit: NORM 100, (NORM 100)",
        ),
        ("EKG QRS ÄNDERUNG", "EKG QRS ÄNDERUNG"),
    ],
)
def test_ptbxl_report_text(raw: str, clean: str) -> None:
    assert ptbxl_report_text(raw) == clean


def test_ptbxl_report_text_real(ptbxl: pd.DataFrame) -> None:
    texts, empty = {}, []
    for ecg_id, report in ptbxl["report"].items():
        try:
            texts[ecg_id] = ptbxl_report_text(report, source=f"ecg_id {ecg_id}")
        except MedclrInputError:
            empty.append(ecg_id)
    assert empty == [443]  # the real report of ecg_id 443 is a single space
    assert ptbxl.loc[443, "report"].strip() == ""
    assert not any(re.search(r"[a-zäöå][ÄÖÜÅ]|[ÄÖÜÅ][a-zäöå]|#|ó|\s\s", t) for t in texts.values())
    assert texts[1] == "sinusrhythmus periphere niederspannung"


# --- MIMIC-IV-ECG machine_measurements.csv ----------------------------------------------------------------

MACHINE_COLUMNS = [
    "subject_id",
    "study_id",
    "cart_id",
    "ecg_time",
    *(f"report_{i}" for i in range(18)),
    "bandwidth",
    "filtering",
    "rr_interval",
    "p_onset",
    "p_end",
    "qrs_onset",
    "qrs_end",
    "t_end",
    "p_axis",
    "qrs_axis",
    "t_axis",
]
MACHINE_ROWS = [
    (
        10000032,
        40689238,
        6848296,
        "2180-07-23 08:44:00",
        ["Sinus rhythm", "Possible left atrial abnormality", "Borderline ECG"],
    ),
    (
        10000032,
        44458630,
        6376932,
        "2180-07-23 09:54:00",
        [
            "Atrial fibrillation with rapid ventricular response",
            "with premature ventricular complexes",
            "",
            "  ",
            "Abnormal ECG",
        ],
    ),
    (10000117, 45090959, 6214760, "2181-03-04 17:14:00", []),
    (10000117, 48446569, 6632385, "2183-09-18 13:52:00", ["Sinus rhythm.", "", "Normal ECG"]),
]


def _write_machine_csv(path: Path, rows: list[tuple[int, int, int, str, list[str]]] = MACHINE_ROWS) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MACHINE_COLUMNS)
        for subject, study, cart, time, statements in rows:
            reports = [*statements, *[""] * (18 - len(statements))]
            writer.writerow(
                [
                    subject,
                    study,
                    cart,
                    time,
                    *reports,
                    "0.005-150 Hz",
                    "60 Hz notch Baseline filter",
                    857,
                    40,
                    156,
                    192,
                    280,
                    560,
                    81,
                    77,
                    79,
                ]
            )
    return path


def test_fixture_has_real_mimic_iv_ecg_columns(tmp_path: Path) -> None:
    header = pd.read_csv(_write_machine_csv(tmp_path / "mm.csv"), nrows=0).columns
    assert list(header) == MACHINE_COLUMNS
    assert set(MACHINE_REPORT_COLUMNS) <= set(header)


def test_read_machine_reports(tmp_path: Path) -> None:
    reports = read_machine_reports(_write_machine_csv(tmp_path / "machine_measurements.csv"))
    assert list(reports.columns) == ["subject_id", "study_id", "ecg_time", "text", "empty"]
    assert reports["study_id"].tolist() == [40689238, 44458630, 45090959, 48446569]
    assert reports["text"].tolist() == [
        "Sinus rhythm. Possible left atrial abnormality. Borderline ECG.",
        "Atrial fibrillation with rapid ventricular response with premature ventricular complexes. Abnormal ECG.",
        "",
        "Sinus rhythm. Normal ECG.",
    ]
    assert reports["empty"].tolist() == [False, False, True, False]
    assert reports["ecg_time"].iloc[0] == "2180-07-23 08:44:00"


def test_machine_report_text_row_forms() -> None:
    row = pd.Series(
        {
            "subject_id": 1,
            "report_0": "Sinus rhythm",
            "report_1": math.nan,
            "report_2": None,
            "report_3": " ",
            "report_17": "Borderline ECG",
        }
    )
    assert machine_report_text(row) == "Sinus rhythm. Borderline ECG."
    assert machine_report_text({"report_0": "Sinus rhythm;", "report_1": ".", "report_2": "Normal ECG."}) == (
        "Sinus rhythm. Normal ECG."
    )
    assert machine_report_text({"report_0": ";", "report_1": "with rapid ventricular response"}) == (
        "with rapid ventricular response."
    )
    with pytest.raises(MedclrInputError, match=r"^study 7: machine report has no statement"):
        machine_report_text({"report_0": math.nan, "report_1": ""}, source="study 7")


def test_read_machine_reports_errors(tmp_path: Path) -> None:
    with pytest.raises(MedclrInputError, match="not found"):
        read_machine_reports(tmp_path / "nope.csv")
    trimmed = tmp_path / "trimmed.csv"
    trimmed.write_text("subject_id,study_id,report_0\n1,2,Sinus rhythm\n")
    with pytest.raises(MedclrInputError, match=r"lacks column.*ecg_time.*expected columns: subject_id, study_id"):
        read_machine_reports(trimmed)
    twice = _write_machine_csv(tmp_path / "twice.csv", [MACHINE_ROWS[0], MACHINE_ROWS[0]])
    with pytest.raises(MedclrInputError, match="repeated"):
        read_machine_reports(twice)
    gap = tmp_path / "gap.csv"
    gap.write_text("subject_id,study_id,ecg_time,report_0\n1,,2180-01-01,Sinus rhythm\n")
    with pytest.raises(MedclrInputError, match="study_id holds non-integer"):
        read_machine_reports(gap)
