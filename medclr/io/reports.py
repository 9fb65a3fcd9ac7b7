"""Free-text radiology reports: sections, de-identification placeholders, the text used for training.

Dataset tables (Indiana/Open-i CSV, PTB-XL statements and reports, MIMIC-IV-ECG machine reports) live in
:mod:`medclr.io.report_sources`, which builds on the functions here.

Sections (:func:`parse_sections`) follow the approach of the official MIMIC-CXR ``section_parser.py``
(Johnson et al., MIMIC-CXR, 2019) in our own code:

- a heading starts a line and ends with a colon (``IMPRESSION:``); its text follows on the same line or
  the next ones. Known headings (:data:`SECTION_SYNONYMS`) match in any case; any other heading must be in
  capitals (as in MIMIC) so that sentences such as ``Dr. Smith: ...`` never split a report.
- heading names become lower-case snake keys. Synonyms as in the official table: ``conclusion``,
  ``findings and impression`` and ``findings/impression`` -> ``impression``; ``clinical history``,
  ``patient history`` -> ``history`` (kept apart from ``indication``: history is the patient's story,
  indication the reason for the exam, and MIMIC tools key on both); ``reason for exam`` ->
  ``indication``; ``comparisons`` -> ``comparison``; ``recommendation(s)`` -> ``recommendations``;
  frequent misspellings (``impresson``, ``findngs``...) are fixed. A capitals heading that names a view
  (``PA AND LATERAL VIEWS OF THE CHEST:``) is ``findings``. Other capitals headings inside findings or
  impression (``LINES/TUBES:``) stay inline there; elsewhere they become their own snake key.
- ``FINAL REPORT`` on a line of its own is a title, not content: it is dropped and the text under it
  (until the next heading) joins ``preamble``, the text before the first heading.
- within a section, wrapped lines are joined with single spaces and paragraphs are kept, separated by
  a blank line; empty sections are left out; a heading seen twice has its texts joined in order.
- with neither findings nor impression, the last section keeps its first paragraph and the rest becomes
  ``last_paragraph`` (the official fallback).

De-identification (:func:`clean_report_text`): MIMIC writes ``___`` (runs of 3+ underscores), Open-i
``XXXX``. A group of placeholders joined by spaces, ``/``, ``:`` or ``-`` (``___/___``, ``XXXX XXXX``) is
one placeholder. The default removes it together with an attached possessive and hyphen
(``XXXX's`` -> ``''``, ``___-year-old`` -> ``year-old``, ``x-XXXX`` -> ``x``) and tidies what is left:
no space before ``.,;:!?)``, runs of punctuation collapse to the strongest mark (``., .`` -> ``.``),
empty brackets go. ``"Dr. ___ was notified at ___ pm."`` -> ``"Dr. was notified at pm."``.
A non-empty ``placeholder`` (``"[deid]"``) replaces each group instead. Whitespace always collapses to
single spaces, so parse sections *before* cleaning. A report with no letter left once placeholders and
section headings are gone is empty and raises :class:`~medclr.errors.MedclrInputError`.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Mapping, Sequence

from medclr.errors import MedclrInputError

__all__ = [
    "CONTEXT_SECTIONS",
    "SECTION_SYNONYMS",
    "clean_report_text",
    "has_report_content",
    "parse_sections",
    "report_text",
]

# fmt: off
SECTION_SYNONYMS: dict[str, str] = {
    "preamble": "preamble", "examination": "examination", "exam": "examination",
    "type of examination": "examination", "indication": "indication", "indications": "indication",
    "reason for examination": "indication", "reason for exam": "indication", "clinical indication": "indication",
    "history": "history", "clinical history": "history", "patient history": "history",
    "clinical information": "history", "pfi": "history", "technique": "technique",
    "comparison": "comparison", "comparisons": "comparison", "comparison exam": "comparison",
    "comparison film": "comparison", "reference exam": "comparison", "findings": "findings",
    "finding": "findings", "impression": "impression", "impressions": "impression", "conclusion": "impression",
    "conclusions": "impression", "findings and impression": "impression", "findings/impression": "impression",
    "findings/ impression": "impression", "wet read": "wet_read", "wetread": "wet_read",
    "notification": "notification", "recommendation": "recommendations", "recommendations": "recommendations",
    "recommendation(s)": "recommendations", "addendum": "addendum", "comment": "comment", "date": "date",
    # misspellings seen in MIMIC-CXR (from the official table)
    "impresson": "impression", "imprression": "impression", "imoression": "impression",
    "impressoin": "impression", "imprssion": "impression", "impresion": "impression", "imperssion": "impression",
    "mpression": "impression", "impession": "impression", "findins": "findings", "findindgs": "findings",
    "findgings": "findings", "findngs": "findings", "findnings": "findings", "finidngs": "findings",
    "idication": "indication", "ndication": "indication", "comparision": "comparison",
    "comparsion": "comparison", "comparrison": "comparison", "comparisions": "comparison",
}
# fmt: on
"""Lower-case heading text -> section key (:func:`parse_sections`)."""

CONTEXT_SECTIONS = frozenset({"examination", "indication", "history", "technique", "comparison"})
"""Sections that describe the request, not the image: never used as the training text."""

_MAIN_WORDS = ("impression", "findings", "history", "comparison", "addendum", "indication", "technique")
_VIEW_WORDS = re.compile(
    r"chest|portable|pa and lat|lateral and pa|ap and lateral|lateral and ap|frontal and|two views|"
    r"frontal view|pa view|ap view|one view|lateral view|bone window|frontal upright|frontal semi-upright|ribs"
)
_BODY_KEYS = frozenset({"findings", "impression"})
_CANONICAL = frozenset(SECTION_SYNONYMS.values()) | {"last_paragraph"}

_NEWLINES = re.compile(r"\r\n?")
_FINAL_REPORT = re.compile(r"^[ \t]*FINAL[ \t]+REPORT[ \t]*:?[ \t]*$", re.MULTILINE | re.IGNORECASE)
_HEADING = re.compile(r"^[ \t]*(?P<name>[A-Za-z][A-Za-z0-9 ()/,&'#-]{0,48}?)[ \t]*:(?=\s|\Z)", re.MULTILINE)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_SPACES = re.compile(r"\s+")
_SNAKE = re.compile(r"[^a-z0-9]+")

_PH = r"(?:_{3,}|X{4,})"
_PH_GROUP = re.compile(rf"{_PH}(?:[\s/:-]*{_PH})*")
_PH_GROUP_REMOVE = re.compile(rf"(?:(?<=\w)-)?{_PH}(?:[\s/:-]*{_PH})*(?:'s\b)?(?:-(?=\w))?")
_INVISIBLE = re.compile(r"[\u200b-\u200d\u2060\ufeff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BR_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)
_BRACKETED = re.compile(r"\[<?([^\[\]]*?)>\]")
_MARKERS = re.compile(r"\[<+|>+\]|\(\s*\)|\[\s*\]|<\s*>")
_MISSING_SPACE = re.compile(r"(?<=[a-z]{2})\.(?=[A-Z][a-z])")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+(?=[.,;:!?)\]])")
_SPACE_AFTER_OPEN = re.compile(r"(?<=[(\[])\s+")
_PUNCT_RUN = re.compile(r"[.,;:](?:\s*[.,;:])+")
_LEADING_PUNCT = re.compile(r"^[\s.,;:!?]+")
_TRAILING_SEPARATORS = re.compile(r"[\s,;]+$")
_HEADING_WORDS = re.compile(
    r"\bfinal\s+report\b:?|(?<![\w(])(?:"
    + "|".join(re.escape(k) for k in sorted(SECTION_SYNONYMS, key=len, reverse=True))
    + r")\s*:",
    re.IGNORECASE,
)
_LETTER = re.compile(r"[^\W\d_]")


def _require_str(text: object, source: str | None) -> str:
    if not isinstance(text, str):
        raise MedclrInputError(
            source,
            f"report text is {type(text).__name__}, expected str",
            "pass the report as text (missing reports are None/NaN in tables: skip them)",
        )
    return text


def _section_key(name: str) -> str:
    """Normalise a heading to its key.

    >>> _section_key("CONCLUSION"), _section_key("PA AND LATERAL VIEWS OF THE CHEST"), _section_key("LINES/TUBES")
    ('impression', 'findings', 'lines_tubes')
    """
    lowered = _SPACES.sub(" ", name.strip().lower())
    if lowered in SECTION_SYNONYMS:
        return SECTION_SYNONYMS[lowered]
    for word in _MAIN_WORDS:
        if word in lowered:
            return SECTION_SYNONYMS[word]
    if "recommendation" in lowered:
        return "recommendations"
    if _VIEW_WORDS.search(lowered):
        return "findings"
    return _SNAKE.sub("_", lowered).strip("_")


def _is_heading(name: str) -> bool:
    """Known headings in any case; other headings in capitals with at least two letters."""
    lowered = _SPACES.sub(" ", name.strip().lower())
    if lowered in SECTION_SYNONYMS:
        return True
    if lowered == "final report":
        return False  # a title: see _FINAL_REPORT
    return not any(c.islower() for c in name) and sum(c.isalpha() for c in name) >= 2


def _boundaries(text: str) -> list[tuple[int, int, str]]:
    """``(heading start, text start, key)`` of every section, ``preamble`` first, in order."""
    found: list[tuple[int, int, str]] = [(0, 0, "preamble")]
    found += [(m.start(), m.end(), "preamble") for m in _FINAL_REPORT.finditer(text)]
    for m in _HEADING.finditer(text):
        if _is_heading(m.group("name")):
            found.append((m.start(), m.end(), _section_key(m.group("name"))))
    found.sort()
    kept: list[tuple[int, int, str]] = []
    for start, end, key in found:
        if kept and key not in _CANONICAL and kept[-1][2] in _BODY_KEYS:
            continue  # a sub-heading such as LINES/TUBES: inside findings stays inline
        kept.append((start, end, key))
    return kept


def _tidy_body(body: str) -> str:
    """Join wrapped lines with single spaces; keep paragraphs apart with a blank line."""
    paragraphs = (_SPACES.sub(" ", p).strip() for p in _PARAGRAPH_BREAK.split(body))
    return "\n\n".join(p for p in paragraphs if p)


def parse_sections(text: str, *, source: str | None = None) -> dict[str, str]:
    """Split a MIMIC-CXR style report into ``{section key: text}`` in document order.

    See the module docstring for the rules (heading matching, synonyms, ``preamble``,
    ``last_paragraph``). An empty text gives ``{}``; a non-``str`` raises :class:`MedclrInputError`.

    >>> parse_sections("FINAL REPORT\\n INDICATION: ___F with cough.\\n\\n FINDINGS: Lungs are\\n clear.\\n"
    ...                " CONCLUSION: No pneumonia.")
    {'indication': '___F with cough.', 'findings': 'Lungs are clear.', 'impression': 'No pneumonia.'}
    """
    text = _NEWLINES.sub("\n", _require_str(text, source))
    bounds = _boundaries(text)
    parts: list[tuple[str, str]] = []
    for i, (_, body_start, key) in enumerate(bounds):
        body_end = bounds[i + 1][0] if i + 1 < len(bounds) else len(text)
        body = _tidy_body(text[body_start:body_end])
        if body:
            parts.append((key, body))
    if parts and not any(key in _BODY_KEYS for key, _ in parts):
        key, body = parts[-1]
        first, _, rest = body.partition("\n\n")
        if rest:
            parts[-1] = (key, first)
            parts.append(("last_paragraph", rest))
    sections: dict[str, str] = {}
    for key, body in parts:
        sections[key] = f"{sections[key]}\n\n{body}" if key in sections else body
    return sections


def _tidy_once(text: str) -> str:
    text = _BRACKETED.sub(r" \1 ", text)
    text = _MARKERS.sub(" ", text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT.sub("", text)
    text = _SPACE_AFTER_OPEN.sub("", text)
    text = _PUNCT_RUN.sub(_strongest_punct, text)
    text = _LEADING_PUNCT.sub("", text)
    return _TRAILING_SEPARATORS.sub("", text)


def _strongest_punct(match: re.Match[str]) -> str:
    """``., .`` -> ``.``; ``;,`` -> ``;``; a colon first is kept (``COMPARISON: .`` -> ``COMPARISON:``)."""
    run = match.group(0)
    if run[0] == ":":
        return ":"
    return next(mark for mark in ".;:," if mark in run)


def _clean(text: str, placeholder: str) -> str:
    """:func:`clean_report_text` without the empty-report check."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFC", text))
    text = _CONTROL.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    text = _BR_TAG.sub(" ", text)
    text = _PH_GROUP.sub(lambda _: placeholder, text) if placeholder else _PH_GROUP_REMOVE.sub(" ", text)
    for _ in range(len(text) + 1):  # every pass shortens the text or stops
        tidier = _tidy_once(text)
        if tidier == text:
            break
        text = tidier
    return _MISSING_SPACE.sub(". ", text)


def _clean_or_empty(text: str, placeholder: str) -> str:
    """The cleaned text, or ``""`` when it has no content (the placeholder itself is not content)."""
    cleaned = _clean(text, placeholder)
    return cleaned if has_report_content(cleaned.replace(placeholder, " ") if placeholder else cleaned) else ""


def has_report_content(text: str) -> bool:
    """Whether ``text`` has a letter outside placeholders and section headings.

    >>> has_report_content("FINDINGS: ___. IMPRESSION: XXXX"), has_report_content("No effusion.")
    (False, True)
    """
    return _LETTER.search(_HEADING_WORDS.sub(" ", _PH_GROUP.sub(" ", text))) is not None


def clean_report_text(text: str, *, placeholder: str = "", source: str | None = None) -> str:
    """Replace de-identification placeholders, tidy punctuation and collapse whitespace.

    Raises :class:`MedclrInputError` naming ``source`` when nothing but whitespace, placeholders,
    punctuation, digits or section headings is left.

    >>> clean_report_text("Dr. ___ was notified at ___ pm.")
    'Dr. was notified at pm.'
    >>> clean_report_text("Seen by Dr. XXXX XXXX on XXXX/XXXX.", placeholder="[deid]")
    'Seen by Dr. [deid] on [deid].'
    """
    cleaned = _clean_or_empty(_require_str(text, source), placeholder)
    if not cleaned:
        raise MedclrInputError(
            source,
            "empty report (only whitespace, de-identification placeholders or section headings)",
            "drop this report or mark it missing; it has no text to train on",
        )
    return cleaned


def report_text(
    sections: Mapping[str, str],
    *,
    prefer: Sequence[str] = ("findings", "impression"),
    headings: bool = False,
    placeholder: str = "",
    source: str | None = None,
) -> str:
    """The training text of a report: the ``prefer`` sections, cleaned, joined with single spaces.

    Each part ends with a full stop (added when it ends without ``.!?``) so the parts read as sentences.

    When none of them has content: ``last_paragraph``, else every other section outside
    :data:`CONTEXT_SECTIONS` (``preamble``, ``wet_read``, ``addendum``...) in order. ``headings=True``
    writes each part as ``FINDINGS: ...``. Raises :class:`MedclrInputError` if nothing is left.

    >>> report_text({"indication": "Cough.", "findings": "Lungs\\n\\nclear.", "impression": "Normal ___."})
    'Lungs clear. Normal.'
    >>> report_text({"findings": "Clear.", "impression": "Normal."}, headings=True)
    'FINDINGS: Clear. IMPRESSION: Normal.'
    """

    def body(key: str) -> str:
        cleaned = _clean_or_empty(_require_str(sections[key], source), placeholder) if key in sections else ""
        if not cleaned:
            return ""
        cleaned = cleaned if cleaned[-1] in ".!?" else f"{cleaned}."
        return f"{key.replace('_', ' ').upper()}: {cleaned}" if headings else cleaned

    parts = [b for b in (body(k) for k in dict.fromkeys(prefer)) if b]
    if not parts:
        fallback = (
            ["last_paragraph"]
            if body("last_paragraph")
            else [k for k in sections if k not in CONTEXT_SECTIONS and k not in prefer]
        )
        parts = [b for b in (body(k) for k in fallback) if b]
    if not parts:
        present = ", ".join(sections) or "none"
        raise MedclrInputError(
            source,
            f"report has no findings, impression or other body text (sections: {present})",
            "drop this report or mark its text missing",
        )
    return " ".join(parts)
