"""PhysioNet/CinC Challenge 2021 (Reyna et al., 2021; PhysioNet v1.0.3): 88,253 12-lead ECGs from seven databases.

Layout read as distributed (https://physionet.org/content/challenge-2021/1.0.3/)::

    ROOT/training/{cpsc_2018, cpsc_2018_extra, st_petersburg_incart, ptb, ptb-xl, georgia, chapman_shaoxing,
                   ningbo}/gN/NAME.{hea,mat}
    ROOT/dx_mapping_scored.csv     Dx, SNOMEDCTCode, Abbreviation, <per-source counts>, Total, Notes
    ROOT/dx_mapping_unscored.csv   Dx, SNOMEDCTCode, Abbreviation, <per-source counts>, Total

Records are found by a recursive search for ``*.hea`` under ROOT (any folder structure). The two mapping tables
come from the official scoring repository (https://github.com/physionetchallenges/evaluation-2021); they are
looked for in ROOT, then anywhere below it. Each header's comments carry ``# Age: 78``, ``# Sex: Male`` and
``# Dx: 164934002,426783006`` (SNOMED-CT codes); the ``.mat`` file is WFDB format 16 in a MATLAB v4 container.

- **Labels**: one column per class of the 2021 scoring (26 classes from the 30 scored codes): the challenge
  scores four pairs of codes as one diagnosis (``Notes`` of ``dx_mapping_scored.csv`` and the official
  ``weights.csv``): 733534002|164909002 (``CLBBB|LBBB``), 713427006|59118001 (``CRBBB|RBBB``),
  284470004|63593006 (``PAC|SVPB``) and 427172004|17338001 (``PVC|VPB``). A merged class is named by its
  members' abbreviations joined with ``|`` as in ``weights_abbreviations.csv``, and is 1 when either code is
  listed. Labels are 1 for a listed code and 0 otherwise (the challenge's convention: no unknowns).
- **Unscored and unknown codes**: unscored codes are kept by abbreviation in ``meta/dx_unscored``; codes in
  neither table are kept in ``meta/dx_unknown`` and counted in ``info.extra["unknown_dx_codes"]`` (not rejected).
  A header without a parseable ``# Dx`` line (missing, empty, or an entry that is not a numeric code) rejects
  its record.
- **Report**: generated from the diagnoses: each known code's ``Dx`` name as a sentence, in header order
  (``"Sinus rhythm. T wave abnormal."``). It restates the labels, so it must not be used to evaluate
  zero-shot classification of these same labels.
- **Split**: the challenge's test sets were never released and there are no patient ids, so the split is a
  hash of the record name (:mod:`medclr.data.splits`, 80/10/10); ``subject_id`` is the record name.
  Records of one patient (several PTB-XL or Ningbo ECGs) can therefore fall into different splits.
- **meta/**: ``age`` (NaN where missing, unparseable or outside 0-120, e.g. PTB-XL's 300 for >89 years),
  ``sex`` (M / F / null), ``source`` (from the record-name prefix), ``dx_codes`` (the header's list),
  ``folder`` (the record's folder under ROOT).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from medclr.data.manifest import LABEL_PREFIX, Manifest, ManifestInfo
from medclr.data.prepare import SOURCES, PrepareOptions, SourceResult
from medclr.data.splits import hash_split, hash_split_protocol
from medclr.data.validate import Problem
from medclr.errors import MedclrInputError
from medclr.io.tables import read_table

SCORED = "dx_mapping_scored.csv"
UNSCORED = "dx_mapping_unscored.csv"
MAPPING_COLUMNS = ("Dx", "SNOMEDCTCode", "Abbreviation")
EQUIVALENT_CODES: tuple[tuple[str, str], ...] = (
    ("733534002", "164909002"),  # complete left bundle branch block | left bundle branch block
    ("713427006", "59118001"),  # complete right bundle branch block | right bundle branch block
    ("284470004", "63593006"),  # premature atrial contraction | supraventricular premature beats
    ("427172004", "17338001"),  # premature ventricular contractions | ventricular premature beats
)
SOURCE_PREFIXES = {
    "A": "CPSC 2018",
    "Q": "CPSC 2018 extra",
    "I": "St Petersburg INCART",
    "S": "PTB",
    "HR": "PTB-XL",
    "E": "Georgia",
    "JS": "Chapman-Shaoxing / Ningbo",
}
SOURCE_COLUMNS = ("CPSC", "CPSC_Extra", "StPetersburg", "PTB", "PTB_XL", "Georgia", "Chapman_Shaoxing", "Ningbo")
"""Per-source count columns of ``dx_mapping_scored.csv`` (the 2021 release)."""
_PREFIX = re.compile(r"^(HR|JS|A|Q|I|S|E)\d+$")
_NOTE_PAIR = re.compile(r"score (\d+) and (\d+) as the same", re.IGNORECASE)
_COMMENT = re.compile(r"^#\s*([A-Za-z]+)\s*:\s*(.*?)\s*$")
_SEX = {"male": "M", "m": "M", "female": "F", "f": "F"}
_MAX_HEADER_BYTES = 1 << 20
_EXPECTED = f"the CinC 2021 training records (*.hea + *.mat, any folders) and {SCORED} / {UNSCORED}"
_FIX_MAPPING = (
    f"copy {SCORED} and {UNSCORED} from https://github.com/physionetchallenges/evaluation-2021 into the dataset root"
)


@dataclass(frozen=True)
class DxMapping:
    """The scored classes (name -> codes, in table order), and code -> (abbreviation, name) for all known codes."""

    classes: dict[str, tuple[str, ...]]
    scored: dict[str, tuple[str, str]]
    unscored: dict[str, tuple[str, str]]
    never_labelled: dict[str, list[str]] = field(default_factory=dict)  # source column -> classes counted 0 there

    def class_of(self) -> dict[str, str]:
        """code -> class name for every scored code."""
        return {code: name for name, codes in self.classes.items() for code in codes}


def find_mapping(root: Path, name: str) -> Path:
    """``ROOT/name``, else the first ``name`` below ROOT (sorted), else a clear error."""
    direct = root / name
    if direct.is_file():
        return direct
    found = sorted(p for p in root.rglob(name) if p.is_file())
    if not found:
        raise MedclrInputError(
            root / name, f"CinC 2021 mapping table {name} not found in or below the root", _FIX_MAPPING
        )
    return found[0]


def _mapping_table(path: Path) -> pd.DataFrame:
    table = read_table(path, f"CinC 2021 {path.name}", MAPPING_COLUMNS, dtype=str, keep_default_na=False)
    table = table.assign(**{c: table[c].str.strip() for c in MAPPING_COLUMNS})
    bad = table.loc[~table["SNOMEDCTCode"].str.fullmatch(r"\d+"), "SNOMEDCTCode"].tolist()
    if bad or table["SNOMEDCTCode"].duplicated().any():
        raise MedclrInputError(path, f"SNOMEDCTCode column has invalid or repeated codes {bad[:3]}", _FIX_MAPPING)
    return table


def equivalent_pairs(scored: pd.DataFrame) -> list[tuple[str, str]]:
    """The official equivalences plus any pair named in the ``Notes`` column ("We score X and Y as the same")."""
    pairs = list(EQUIVALENT_CODES)
    notes = scored["Notes"] if "Notes" in scored.columns else pd.Series(dtype=str)
    for note in notes.dropna():
        match = _NOTE_PAIR.search(str(note))
        if match and (match[1], match[2]) not in pairs and (match[2], match[1]) not in pairs:
            pairs.append((match[1], match[2]))
    return pairs


def load_dx_mapping(scored_path: Path, unscored_path: Path) -> DxMapping:
    """Read both mapping tables and merge the scored codes into the 2021 scoring classes."""
    scored, unscored = _mapping_table(scored_path), _mapping_table(unscored_path)
    overlap = sorted(set(scored["SNOMEDCTCode"]) & set(unscored["SNOMEDCTCode"]))
    if overlap:
        raise MedclrInputError(unscored_path, f"codes listed as both scored and unscored: {overlap[:3]}", _FIX_MAPPING)
    known = {c: (a, d) for c, a, d in zip(scored["SNOMEDCTCode"], scored["Abbreviation"], scored["Dx"], strict=True)}
    partner: dict[str, str] = {}
    for a, b in equivalent_pairs(scored):
        if a in known and b in known:
            partner[a], partner[b] = b, a
    classes: dict[str, tuple[str, ...]] = {}
    done: set[str] = set()
    for code in scored["SNOMEDCTCode"]:
        if code in done:
            continue
        members = [c for c in scored["SNOMEDCTCode"] if c == code or c == partner.get(code)]
        classes["|".join(known[c][0] for c in members)] = tuple(members)
        done.update(members)
    extra = {
        c: (a, d) for c, a, d in zip(unscored["SNOMEDCTCode"], unscored["Abbreviation"], unscored["Dx"], strict=True)
    }
    return DxMapping(classes, known, extra, never_labelled(scored, classes))


def never_labelled(scored: pd.DataFrame, classes: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
    """``{source column: [classes with a count of 0 in that source]}`` from the per-source count columns.

    A 0 label for such a class in that source means "never annotated there" rather than "checked and absent"
    (e.g. PTB-XL has no ``BBB``): the manifest keeps the challenge's 0 and records this list in ``info.extra``.
    """
    out: dict[str, list[str]] = {}
    for column in (c for c in SOURCE_COLUMNS if c in scored.columns):
        counts = dict(zip(scored["SNOMEDCTCode"], pd.to_numeric(scored[column], errors="coerce"), strict=True))
        out[column] = [name for name, codes in classes.items() if all(counts.get(c, 0) == 0 for c in codes)]
    return out


@dataclass(frozen=True)
class CincHeader:
    """What the adapter reads from one header: the sampling rate and the comment fields."""

    fs: float | None
    comments: dict[str, str]  # lower-case key -> value (age, sex, dx, rx, hx, sx)


def read_cinc_header(path: Path) -> CincHeader:
    """Parse the record line's sampling rate and the ``# Key: value`` comments (later keys win)."""
    if path.stat().st_size > _MAX_HEADER_BYTES:
        raise MedclrInputError(path, "header larger than 1 MiB", "check the file")
    text = path.read_bytes().decode("utf-8", errors="replace")
    fs: float | None = None
    comments: dict[str, str] = {}
    record_line_seen = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            match = _COMMENT.match(stripped)
            if match:
                comments[match[1].lower()] = match[2]
        elif stripped and not record_line_seen:
            record_line_seen = True
            fs = _rate(stripped.split())
    return CincHeader(fs, comments)


def _rate(tokens: Sequence[str]) -> float | None:
    try:
        value = float(tokens[2].split("/")[0]) if len(tokens) > 2 else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def parse_dx(value: str | None) -> list[str]:
    """``"164934002, 426783006"`` -> ``["164934002", "426783006"]`` (order kept, repeats dropped); raises if bad."""
    if value is None:
        raise MedclrInputError(None, "header has no '# Dx:' line")
    codes = [c.strip() for c in value.split(",")]
    bad = [c for c in codes if not c.isdigit() or not c.isascii()]
    if not value.strip() or bad:
        raise MedclrInputError(None, f"'# Dx: {value[:60]}' is not a comma-separated list of SNOMED-CT codes")
    return list(dict.fromkeys(codes))


def parse_age(value: str | None) -> float:
    """Age in years, NaN where missing, unparseable or outside 0-120 (e.g. PTB-XL's 300 for ages over 89)."""
    try:
        age = float(value) if value is not None else math.nan
    except ValueError:
        return math.nan
    return age if math.isfinite(age) and 0 <= age <= 120 else math.nan


def source_of(record: str) -> str | None:
    """The challenge database a record comes from, by its name prefix (``HR06000`` -> ``PTB-XL``)."""
    match = _PREFIX.match(record)
    return SOURCE_PREFIXES[match[1]] if match else None


@SOURCES.register("cinc2021")
def prepare_cinc2021(options: PrepareOptions) -> SourceResult:
    """Read the CinC 2021 training data as distributed (see the module docstring)."""
    root_arg = options.root if options.root is not None else options.ecg_root
    root = PrepareOptions(root=root_arg).require_root("cinc2021", _EXPECTED)
    mapping = load_dx_mapping(find_mapping(root, SCORED), find_mapping(root, UNSCORED))
    headers = sorted(p for p in root.rglob("*.hea") if p.is_file() and not p.name.startswith("."))
    if not headers:
        raise MedclrInputError(
            root, "no *.hea record headers found in or below the root", f"pass the folder that holds {_EXPECTED}"
        )
    rows, rejected, unknown = _rows(root, headers, mapping, options.progress)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame.insert(2, "split", hash_split(frame["subject_id"]))
    info = ManifestInfo(
        source="cinc2021",
        roots={"ecg": str(root)},
        split_protocol=f"{hash_split_protocol('record name')}; CinC 2021 has no patient ids and its test sets "
        "were never released",
        label_sets={"scored": list(mapping.classes)},
        label_policy={
            "dx": "1 if the header's # Dx lists a code of the class, else 0 (complete annotation as scored by the "
            "challenge; no unknowns)",
            "equivalent_codes": "the 2021 scoring's equivalent pairs are one class each, named 'A|B' by abbreviation",
        },
        extra={
            "version": "PhysioNet/CinC Challenge 2021 training data v1.0.3",
            "scored_classes": {name: list(codes) for name, codes in mapping.classes.items()},
            "unknown_dx_codes": dict(sorted(unknown.items())),
            "classes_never_labelled_by_source": mapping.never_labelled,
            "n_headers": len(headers),
            "report": "generated from the Dx names (restates the labels)",
        },
    )
    return SourceResult(Manifest(frame, info), rejected)


def _rows(
    root: Path, headers: list[Path], mapping: DxMapping, progress: bool
) -> tuple[list[dict[str, object]], list[Problem], Counter[str]]:
    class_of = mapping.class_of()
    rows: list[dict[str, object]] = []
    rejected: list[Problem] = []
    unknown: Counter[str] = Counter()
    seen: dict[str, str] = {}
    for header in tqdm(headers, desc="reading CinC 2021 headers", unit="rec", disable=not progress, leave=False):
        record = header.stem
        relative = header.relative_to(root).with_suffix("").as_posix()
        if record in seen:
            rejected.append(Problem(record, "row", relative, f"record name already used by {seen[record]}"))
            continue
        try:
            parsed = read_cinc_header(header)
            codes = parse_dx(parsed.comments.get("dx"))
        except (MedclrInputError, OSError) as err:
            reason = err.problem if isinstance(err, MedclrInputError) else f"cannot read the header ({err})"
            rejected.append(Problem(record, "row", relative, reason))
            continue
        seen[record] = relative
        unknown.update(c for c in codes if c not in mapping.scored and c not in mapping.unscored)
        rows.append(_row(record, relative, parsed, codes, mapping, class_of))
    return rows, rejected, unknown


def _row(
    record: str, relative: str, header: CincHeader, codes: list[str], mapping: DxMapping, class_of: dict[str, str]
) -> dict[str, object]:
    positive = {class_of[c] for c in codes if c in class_of}
    names = [(mapping.scored.get(c) or mapping.unscored[c])[1] for c in codes if c in class_of or c in mapping.unscored]
    sex = header.comments.get("sex")
    row: dict[str, object] = {
        "study_id": record,
        "subject_id": record,
        "ecg_path": relative,
        "ecg_fs": header.fs,
        "report": diagnosis_text(names),
        "meta/age": parse_age(header.comments.get("age")),
        "meta/sex": _SEX.get(sex.strip().lower()) if sex else None,
        "meta/source": source_of(record),
        "meta/folder": str(Path(relative).parent.as_posix()),
        "meta/dx_codes": ",".join(codes),
        "meta/dx_unscored": ",".join(mapping.unscored[c][0] for c in codes if c in mapping.unscored) or None,
        "meta/dx_unknown": ",".join(c for c in codes if c not in class_of and c not in mapping.unscored) or None,
    }
    row |= {f"{LABEL_PREFIX}{name}": float(name in positive) for name in mapping.classes}
    return row


def diagnosis_text(names: Sequence[str]) -> str | None:
    """``["sinus rhythm", "t wave abnormal"]`` -> ``"Sinus rhythm. T wave abnormal."`` (None when empty)."""
    sentences = [n.strip() for n in dict.fromkeys(names) if n.strip()]
    return " ".join(f"{s[0].upper()}{s[1:]}." for s in sentences) or None
