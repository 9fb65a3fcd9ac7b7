"""Text prompts for zero-shot diagnosis: files clinicians edit without code, and prompts from the datasets.

A prompt file (``configs/prompts/<name>.yaml``) names the query modality and, per label, positive and optional
negative phrasings::

    name: chexpert
    query: cxr                    # cxr | ecg | joint (X-ray and ECG together)
    protocol: CheXzero positive/negative prompt pairs (Tiu et al., 2022) ...
    labels:
      Cardiomegaly:               # a label column of the manifest
        positive: [cardiomegaly, enlarged cardiac silhouette]
        negative: [no cardiomegaly, normal heart size]

With negatives a label's probability is the CheXzero softmax over the (positive, negative) pair; without, the
label is scored by its positive similarity alone (MERL's protocol on PTB-XL, whose prompts are the statement
descriptions: :func:`prompts_from_descriptions`). Several phrasings form a prompt *ensemble*: their unit
embeddings are averaged and re-normalised (CheXzero).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from medclr.models.config import MedclrConfigError

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "configs" / "prompts"
DEFAULT_PROMPTS = {"cxr": "chexpert", "ecg": "ecg", "joint": "joint"}  # configs/prompts/<name>.yaml per query
PTBXL_GROUPS = ("superclass", "subclass", "form", "rhythm")
Query = Literal["cxr", "ecg", "joint"]
QUERY_MODALITIES: dict[str, tuple[str, ...]] = {"cxr": ("cxr",), "ecg": ("ecg",), "joint": ("cxr", "ecg")}


@dataclass(frozen=True)
class ClassPrompts:
    """Phrasings that assert (``positive``) and deny (``negative``, may be empty) one label."""

    positive: tuple[str, ...]
    negative: tuple[str, ...] = ()


@dataclass(frozen=True)
class PromptSet:
    """Prompts per label for one query modality; ``source`` says where they came from (a file or the manifest)."""

    name: str
    query: Query
    labels: dict[str, ClassPrompts]
    protocol: str = ""
    source: str = ""
    groups: dict[str, list[str]] = field(default_factory=dict)  # named label subsets, e.g. PTB-XL "superclass"

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities a query is made of."""
        return QUERY_MODALITIES[self.query]

    def restricted(self, labels: list[str]) -> PromptSet:
        """The same prompts for ``labels`` only (in that order)."""
        groups = {g: [x for x in members if x in labels] for g, members in self.groups.items()}
        return PromptSet(self.name, self.query, {x: self.labels[x] for x in labels}, self.protocol, self.source,
                         {g: m for g, m in groups.items() if m})


def builtin_prompt_path(name: str) -> Path:
    """``configs/prompts/<name>.yaml``."""
    return PROMPTS_DIR / f"{name}.yaml"


def load_prompts(path: str | Path) -> PromptSet:
    """Read a prompt file (see the module docstring); a wrong key or type is an error that names it."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise MedclrConfigError(f"{path}: cannot read the prompt file ({err})") from None
    if not isinstance(data, dict):
        raise MedclrConfigError(f"{path}: a prompt file is a mapping with keys name, query, labels")
    unknown = set(data) - {"name", "query", "protocol", "labels", "groups"}
    if unknown:
        raise MedclrConfigError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: name, query, protocol, labels, "
                                "groups")
    query = data.get("query", "cxr")
    if query not in QUERY_MODALITIES:
        raise MedclrConfigError(f"{path}: query: {query!r} is not one of {', '.join(QUERY_MODALITIES)}")
    labels = data.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise MedclrConfigError(f"{path}: labels: expected a non-empty mapping label -> {{positive, negative}}")
    parsed = {str(label): _class_prompts(entry, f"{path}: labels.{label}") for label, entry in labels.items()}
    groups = data.get("groups") or {}
    if not isinstance(groups, dict) or any(not isinstance(v, list) for v in groups.values()):
        raise MedclrConfigError(f"{path}: groups: expected a mapping name -> list of labels")
    return PromptSet(str(data.get("name", path.stem)), query, parsed, str(data.get("protocol", "")), str(path),
                     {str(g): [str(x) for x in v] for g, v in groups.items()})


def _class_prompts(entry: Any, where: str) -> ClassPrompts:
    if isinstance(entry, str | list):
        entry = {"positive": entry}
    if not isinstance(entry, dict) or set(entry) - {"positive", "negative"}:
        raise MedclrConfigError(f"{where}: expected {{positive: [...], negative: [...]}}")

    def phrases(key: str) -> tuple[str, ...]:
        value = entry.get(key) or []
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise MedclrConfigError(f"{where}.{key}: expected a list of non-empty strings")
        return tuple(v.strip() for v in value)

    positive = phrases("positive")
    if not positive:
        raise MedclrConfigError(f"{where}.positive: at least one positive phrasing is needed")
    return ClassPrompts(positive, phrases("negative"))


def prompts_from_descriptions(descriptions: Mapping[str, str], label_sets: Mapping[str, list[str]],
                              label_codes: Mapping[str, list[str]] | None = None, *, name: str = "ptbxl",
                              query: Query = "ecg") -> PromptSet:
    """MERL-style prompts: each label's statement description as its single positive prompt, no negatives.

    ``descriptions`` maps a code (PTB-XL ``scp_statements.csv`` index, or a superclass) to its description;
    a label column whose name is not a code is looked up through ``label_codes`` (column -> codes). Labels
    without a description are left out. ``label_sets`` become the prompt set's groups (superclass, subclass ...).
    """
    labels: dict[str, ClassPrompts] = {}
    groups: dict[str, list[str]] = {}
    for group, columns in label_sets.items():
        for column in columns:
            codes = [column, column.split(":")[-1], *(label_codes or {}).get(column, [])]
            text = next((descriptions[c] for c in codes if c in descriptions), None)
            if text:
                labels[column] = ClassPrompts((text,))
                groups.setdefault(group, []).append(column)
    protocol = ("MERL zero-shot (Liu et al., 2024): one prompt per label, the statement description; the label's "
                "score is its cosine/objective similarity to the ECG (no negative prompt)")
    return PromptSet(name, query, labels, protocol, "manifest label_descriptions", groups)


def default_prompts(query: Query, info: Any = None) -> PromptSet:
    """The prompts a task uses without ``--prompts``: for ECG queries on a manifest with statement descriptions
    (PTB-XL; ``info`` is its :class:`~medclr.data.manifest.ManifestInfo`) the MERL prompts of its label sets,
    otherwise ``configs/prompts/<DEFAULT_PROMPTS[query]>.yaml``."""
    extra = getattr(info, "extra", {}) or {}
    if query == "ecg" and extra.get("label_descriptions"):
        sets = info.label_sets
        sets = {g: v for g, v in sets.items() if g in PTBXL_GROUPS} or sets
        return prompts_from_descriptions(extra["label_descriptions"], sets, extra.get("label_codes", {}))
    return load_prompts(builtin_prompt_path(DEFAULT_PROMPTS[query]))
