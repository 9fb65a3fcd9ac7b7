"""Fuzz medclr.io.reports and report_sources: any input gives text or a MedclrInputError, never a crash."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from medclr.errors import MedclrInputError
from medclr.io.report_sources import machine_report_text, parse_scp_codes, ptbxl_report_text
from medclr.io.reports import SECTION_SYNONYMS, clean_report_text, parse_sections, report_text

# Text rich in what the parsers look at: headings, colons, newlines, placeholders, brackets, punctuation.
TOKENS = st.sampled_from(
    [
        "FINDINGS:",
        "IMPRESSION:",
        "Impression:",
        "FINAL REPORT",
        "WET READ:",
        "LINES/TUBES:",
        "CHEST, PA:",
        "___",
        "____",
        "XXXX",
        "XXXX's",
        "x-XXXX",
        "-",
        "/",
        ":",
        ".",
        ",",
        ";",
        "(",
        ")",
        "[<",
        ">]",
        "<BR>",
        "&lt;",
        "&amp;",
        "\n",
        "\n \n",
        "\r\n",
        " ",
        "\t",
        "lungs",
        "Clear",
        "no",
        "1.",
        "Dr.",
        "\x00",
        "\u00a0",
        "ä",
        "ß",
    ]
)
REPORTISH = st.lists(TOKENS, max_size=40).map("".join)
ANY_TEXT = st.one_of(st.text(max_size=200), REPORTISH)
KEY = re.compile(r"^[a-z0-9_]+$")
HEADINGS = sorted(SECTION_SYNONYMS)
WORDS = st.lists(
    st.sampled_from(["lungs", "are", "clear", "no", "effusion", "___", "XXXX", "2", "cm", ".", ","]),
    min_size=1,
    max_size=12,
)


def _check_clean(text: str) -> None:
    assert text == text.strip() and "  " not in text and "\n" not in text
    assert not re.search(r"_{3,}|X{4,}", text)


@given(ANY_TEXT)
@settings(max_examples=300)
def test_parse_sections_never_crashes(text: str) -> None:
    sections = parse_sections(text)
    for key, body in sections.items():
        assert KEY.match(key), key
        assert body and body == body.strip()


@given(ANY_TEXT, st.sampled_from(["", "[deid]"]))
@settings(max_examples=300)
def test_clean_report_text_gives_text_or_typed_error(text: str, placeholder: str) -> None:
    try:
        cleaned = clean_report_text(text, placeholder=placeholder, source="fuzz")
    except MedclrInputError as err:
        assert str(err).startswith("fuzz: empty report")
        return
    _check_clean(cleaned)
    if "&" not in text:  # entities resolve once: "&amp;lt;" -> "&lt;" -> "<"
        assert clean_report_text(cleaned, placeholder=placeholder) == cleaned


@given(
    st.lists(
        st.tuples(
            st.one_of(st.sampled_from(HEADINGS), st.sampled_from(["OTHER", "PA AND LAT"])),
            st.sampled_from(["upper", "lower", "title"]),
            WORDS,
            st.booleans(),
        ),
        max_size=6,
    ),
    st.text(alphabet="abc ___.\n", max_size=30),
)
@settings(max_examples=300)
def test_random_section_layouts(layout: list[tuple[str, str, list[str], bool]], preamble: str) -> None:
    lines = [preamble, " FINAL REPORT"]
    for heading, case, words, same_line in layout:
        name = getattr(heading, case)()
        body = " ".join(words)
        lines.append(f" {name}: {body}" if same_line else f" {name}:\n \n {body[:20]}\n {body[20:]}")
    text = "\n".join(lines)
    sections = parse_sections(text)
    known = {
        SECTION_SYNONYMS[h] for h, _, words, _ in layout if h in SECTION_SYNONYMS and any(w.isalpha() for w in words)
    }
    assert known <= set(sections), (known, sections)
    try:
        out = report_text(sections, source="layout")
    except MedclrInputError as err:
        assert str(err).startswith("layout: report has no")
        return
    _check_clean(out)


@given(st.one_of(st.text(max_size=80), st.dictionaries(st.text(max_size=6), st.floats(-10, 200), max_size=4).map(repr)))
@settings(max_examples=300)
def test_parse_scp_codes_never_crashes(cell: str) -> None:
    try:
        codes = parse_scp_codes(cell)
    except MedclrInputError:
        return
    assert all(isinstance(k, str) and 0.0 <= v <= 100.0 for k, v in codes.items())


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=6).filter(str.strip),
        st.sampled_from([0.0, 15.0, 35.0, 50.0, 80.0, 100.0]),
        max_size=5,
    )
)
def test_parse_scp_codes_round_trip(codes: dict[str, float]) -> None:
    assert parse_scp_codes(repr(codes)) == codes


CELL = st.one_of(
    st.none(),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(["Sinus rhythm", "with rapid ventricular response", "Borderline ECG", "", " ", "Abnormal ECG."]),
)


@given(st.dictionaries(st.sampled_from([f"report_{i}" for i in range(18)] + ["subject_id"]), CELL, max_size=19))
@settings(max_examples=300)
def test_machine_report_text_never_crashes(row: dict[str, object]) -> None:
    try:
        text = machine_report_text(row)
    except MedclrInputError:
        return
    assert text.endswith(".") and text == text.strip() and "  " not in text


@given(
    st.one_of(
        st.text(max_size=120),
        st.lists(st.sampled_from(["sinusrhythmus", "mÄssige", "f#r", "ó¬", " ", "Ü", "á", "\n"]), max_size=20).map(
            "".join
        ),
    )
)
@settings(max_examples=300)
def test_ptbxl_report_text_never_crashes(report: str) -> None:
    try:
        text = ptbxl_report_text(report)
    except MedclrInputError:
        return
    assert text == text.strip() and not re.search(r"\s\s", text)
