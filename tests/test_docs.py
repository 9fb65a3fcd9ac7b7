"""The project's Markdown stays true to the tree: relative links and anchors resolve, and the README's module
table names every module of the package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_DIRS = ("apps", "benchmarks", "configs", "data_cards")
DOCS = sorted([*ROOT.glob("*.md"), *(p for d in DOC_DIRS for p in (ROOT / d).rglob("*.md"))])
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FENCE = re.compile(r"```.*?```", re.S)


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces -> ``-``."""
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    return {github_anchor(line) for line in text.splitlines() if line.startswith("#")}


def test_github_anchor() -> None:
    heading = "#### BioViL's smoothed maps (`--grounding-smooth 1.5`)"
    assert github_anchor(heading) == "biovils-smoothed-maps---grounding-smooth-15"
    assert github_anchor("## Real PTB-XL excerpt, ECG <-> report") == "real-ptb-xl-excerpt-ecg---report"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for url in _LINK.findall(_FENCE.sub("", doc.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", url):
            continue  # http(s), mailto: not checked offline
        path, _, fragment = url.partition("#")
        target = (doc.parent / path).resolve() if path else doc
        if not target.exists():
            broken.append(f"{url} (no file {target})")
        elif fragment and target.suffix == ".md" and fragment not in anchors(target):
            broken.append(f"{url} (no heading #{fragment} in {target.name})")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def test_readme_module_table_names_every_module() -> None:
    """Row ``medclr/<package>/`` names each of its modules; a sub-package's follow `` `<sub>/`: `` there."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(medclr/[\w/]*)` \| (.+) \|$", readme, re.M))
    missing = []
    for module in sorted((ROOT / "medclr").rglob("*.py")):
        parts = module.relative_to(ROOT / "medclr").parts
        if module.name.startswith("__"):
            continue
        row = rows.get(f"medclr/{parts[0]}/" if len(parts) > 1 else "medclr/", "")
        if len(parts) == 3:
            row = row.partition(f"`{parts[1]}/`:")[2]
        if f"`{module.stem}`" not in row:
            missing.append(module.relative_to(ROOT).as_posix())
    assert not missing, f"README's module table (Layout) lacks: {missing}"
