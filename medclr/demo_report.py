"""The results of ``medclr demo``: the headline table (printed and in ``DIR/report.md``) and the report itself.

:func:`results_rows` picks each evaluation task's headline metrics (``HEADLINE``) from its metrics file, with the
95% bootstrap CI the file states (``<key>_ci_low`` / ``<key>_ci_high``), the number of items it is computed on and
a baseline to read it against:

- the simple baselines of ``data_cards/synth.md`` ("Simple baselines": logistic regression on 32 x 32 pixels / 62
  ECG summary features, test AUROC on the patient-level test split of the seed-0 ``demo`` world) beside the
  zero-shot AUROCs they can be compared with, and the pointing game of the supervised CNN's class activation maps
  beside the X-ray pointing game (:func:`card_baselines`; read from the card, not restated here, and passed in
  only for the ``demo`` preset, the world they were measured on);
- and the chance level the metrics file states (:func:`chance_level`: ``<metric>_chance`` for the grounding
  pointing games, K/n for retrieval recall@K), as the baseline where the card has none, else in its note.

:func:`write_report` renders the same rows as Markdown with each task's protocol statements, its plots and the
stage timings.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medclr.demo import DemoOptions, Stage

SYNTH_CARD = Path(__file__).resolve().parents[1] / "data_cards" / "synth.md"
# the card's CAM pointing-game rows: "pointing game: MS-CXR findings" (the headline), "pointing game: all phrases",
# "pointing game: Edema", "pointing game@15px: ..."
POINTING_ROW = re.compile(r"pointing game(@[\d.]+px)?: (.+)")
Metrics = dict[str, Any]
Baselines = dict[tuple[str, str], tuple[float, str]]  # (task, metric) -> (value, which baseline)

# Metrics shown in the results table per task (full-match regexes; CIs come from <key>_ci_low/_ci_high).
_PAIRS_WITH_REPORTS = r"(report->cxr|cxr->report|report->ecg|ecg->report)"
HEADLINE: dict[str, tuple[str, ...]] = {
    "zeroshot-cxr": (r"auroc/[^/]+", "auroc_macro", "chexpert5x200/top1"),
    "zeroshot-ecg": (r"auroc/[^/]+", "auroc_macro"),
    "zeroshot-joint": (r"auroc/[^/]+",),
    "retrieval": (rf"recall@(1|10)/{_PAIRS_WITH_REPORTS}", r"recall@10/(report->cxr|cxr->report)_local",
                  r"recall@10/(cxr->ecg|ecg->cxr|\w+\+\w+->\w+)"),
    "grounding": ("cnr", "miou", "pointing_game", r"pointing_game@[\d.]+px", r"all_categories/pointing_game",
                  "ecg/cnr", "ecg/pointing_game_lead", "ecg/pointing_game_segment", "ecg/lead_auroc"),
}
PLOTS = {"zeroshot-cxr": "ROC curves (X-ray zero-shot)", "zeroshot-ecg": "ROC curves (ECG zero-shot)",
         "zeroshot-joint": "ROC curves (joint zero-shot)", "retrieval": "retrieval examples",
         "grounding": "grounding overlays"}
COLUMNS = ("task", "metric", "value [95% CI]", "n", "baseline")


@dataclass
class ResultRow:
    """One line of the results table."""

    task: str
    metric: str
    value: float
    ci: tuple[float, float] | None = None
    n: str = ""
    baseline: float | None = None
    baseline_note: str = ""

    def value_text(self) -> str:
        text = _fmt(self.value)
        if self.ci is not None and not any(math.isnan(c) for c in self.ci):
            text += f" [{_fmt(self.ci[0])}, {_fmt(self.ci[1])}]"
        return text


def card_baselines(card: Path = SYNTH_CARD) -> Baselines:
    """``(task, metric) -> (AUROC, which baseline)`` from the "Simple baselines" table of ``data_cards/synth.md``.

    Card rows map to metrics as: a finding (``Cardiomegaly``) -> ``zeroshot-cxr`` ``auroc/Cardiomegaly`` (X-ray
    column); ``ECG CD (...)`` -> ``zeroshot-ecg`` ``auroc/CD`` (ECG column); ``joint: Heart Failure`` ->
    ``zeroshot-joint`` ``auroc/Heart Failure`` (the "both" column); ``pointing game: MS-CXR findings`` / ``pointing
    game: all phrases`` / ``pointing game: Edema`` -> ``grounding`` ``pointing_game`` (MS-CXR's eight findings, the
    headline) / ``all_categories/pointing_game`` / ``pointing_game/Edema`` (the supervised CNN's CAM, third
    column), ``pointing game@15px: ...`` the same for ``pointing_game@15px``. Empty when the card or the table is
    missing.
    """
    if not card.is_file() or "## Simple baselines" not in (text := card.read_text()):
        return {}
    section = text.split("## Simple baselines", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("|")]
    out: Baselines = {}
    for line in lines[2:]:  # header, |---| rule
        cells = [c.strip() for c in line.strip("|").split("|")]
        label = cells[0]
        if (pointing := POINTING_ROW.fullmatch(label)) and len(cells) >= 3:
            metric = f"pointing_game{pointing[1] or ''}"
            scope = {"MS-CXR findings": metric, "all phrases": f"all_categories/{metric}"}
            key = ("grounding", scope.get(pointing[2], f"{metric}/{pointing[2]}"))
            value, note = cells[2], "supervised CNN's CAM, other X-rays"
        elif len(cells) < 4:
            continue
        elif label.startswith("ECG "):
            key, value, note = ("zeroshot-ecg", f"auroc/{label.split()[1]}"), cells[2], "LR on 62 ECG summary features"
        elif label.startswith("joint: "):
            key, value, note = ("zeroshot-joint", f"auroc/{label[7:]}"), cells[3], "LR on 32x32 pixels + ECG features"
        else:
            key, value, note = ("zeroshot-cxr", f"auroc/{label}"), cells[1], "LR on 32x32 pixels"
        try:
            out[key] = (float(value), note)
        except ValueError:
            continue
    return out


def _count(values: Metrics, task: str, key: str) -> str:
    """How many items a metric is computed on: positives/negatives, retrieval queries, phrases or ECG findings."""
    def num(name: str) -> str:
        value = values.get(name)
        return f"{value:.0f}" if isinstance(value, int | float) and not math.isnan(value) else ""

    name = key.split("/", 1)[1] if "/" in key else ""
    if task.startswith("zeroshot") and key.startswith("auroc/"):
        pos, neg = num(f"n_pos/{name}"), num(f"n_neg/{name}")
        return f"{pos}+ / {neg}-" if pos and neg else ""
    if task == "retrieval":
        return num(f"n/{name}")
    if task == "grounding" and key.startswith("all_categories/"):  # the headline's phrases and the others
        scored, other = values.get("n_phrases"), values.get("n_phrases_other")
        return f"{scored + other:.0f}" if isinstance(scored, int | float) and isinstance(other, int | float) else ""
    if task == "grounding":
        return num("ecg/n" if key.startswith("ecg/") else "n_phrases")
    return num("n_rows")


def chance_level(values: Metrics, task: str, key: str) -> tuple[float, str] | None:
    """The chance level a metric file states for ``key``: ``<key>_chance`` (grounding pointing games), or K/n for
    retrieval recall@K (the retrieval protocol: "chance recall@K = K/n"), whose note adds the label oracle's
    recall (``<key>_label_ceiling``, :func:`medclr.eval.retrieval.label_ceiling`) when the file has it; the X-ray
    pointing game's note adds the token grid's own ceiling (``pointing_game_reachable``)."""
    if isinstance(chance := values.get(f"{key}_chance"), int | float):
        grid = values.get(f"{key}_reachable")
        return float(chance), f"chance; grid ceiling {grid:.3f}" if isinstance(grid, int | float) else "chance"
    match = re.fullmatch(r"recall@(\d+)/(.+)", key)
    if task == "retrieval" and match and isinstance(n := values.get(f"n/{match[2]}"), int | float) and n > 0:
        ceiling = values.get(f"{key}_label_ceiling")
        note = f"chance K/n; label ceiling {ceiling:.3f}" if isinstance(ceiling, int | float) else "chance K/n"
        return min(1.0, int(match[1]) / float(n)), note
    return None


def _with_chance(card: tuple[float, str] | None, chance: tuple[float, str] | None) -> tuple[float, str] | None:
    """The card's baseline with the chance level's note appended (``"...; chance 0.074; grid ceiling 0.936"``),
    else whichever of the two there is."""
    if card is None or chance is None:
        return card or chance
    head, *rest = chance[1].split("; ")
    return card[0], "; ".join([card[1], f"{head} {chance[0]:.3f}", *rest])


def results_rows(metrics: dict[str, Metrics], baselines: Baselines) -> list[ResultRow]:
    """The headline metrics of each task (``HEADLINE``) with their CIs, counts and a baseline: the data card's
    simple baseline where ``baselines`` has one (with the chance level in its note, :func:`_with_chance`), else the
    chance level the metrics file states."""
    rows = []
    for task, values in metrics.items():
        patterns = HEADLINE.get(task, ())
        for key, value in values.items():
            if (not isinstance(value, int | float) or isinstance(value, bool)
                    or key.endswith(("_ci_low", "_ci_high", "_label_ceiling"))
                    or not any(re.fullmatch(p, key) for p in patterns)):
                continue
            low, high = values.get(f"{key}_ci_low"), values.get(f"{key}_ci_high")
            ci = (float(low), float(high)) if isinstance(low, int | float) and isinstance(high, int | float) else None
            base = _with_chance(baselines.get((task, key)), chance_level(values, task, key))
            rows.append(ResultRow(task, key, float(value), ci, _count(values, task, key),
                                  base[0] if base else None, base[1] if base else ""))
    return rows


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3f}"


def table_cells(rows: list[ResultRow]) -> list[tuple[str, ...]]:
    return [(r.task, r.metric, r.value_text(), r.n,
             f"{_fmt(r.baseline)} ({r.baseline_note})" if r.baseline is not None else "") for r in rows]


def render_table(rows: list[ResultRow]) -> str:
    """The results as an aligned plain-text table."""
    cells = [COLUMNS, *table_cells(rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(COLUMNS))).rstrip() for c in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def markdown_table(rows: list[ResultRow]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---|---:|---:|---|"]
    lines += [f"| {t} | `{m}` | {v} | {n} | {b} |" for t, m, v, n, b in table_cells(rows)]
    return "\n".join(lines)


def render_timings(stages: list[Stage], total: float) -> str:
    width = max(len(s.name) for s in stages)
    lines = [f"{s.name:<{width}}  {s.status:<7}  {s.seconds:7.1f} s" for s in stages]
    return "\n".join([*lines, f"{'total':<{width}}  {'':<7}  {total:7.1f} s"])


def protocol_lines(metrics: dict[str, Metrics]) -> list[str]:
    """Markdown bullets of each metrics file's protocol statements (split, checkpoint, objective, prompts,
    protocols); the label policy, the same for every task of one manifest, is listed once per distinct text."""
    lines: list[str] = []
    policies: dict[str, list[str]] = {}
    for task, values in metrics.items():
        keys = ["splits", "split_protocol", "checkpoint", "objective"]
        keys += [k for k in values if k.endswith(("protocol", "_rows", "prompts")) and k not in keys]
        lines.append(f"- **{task}**: " + "; ".join(f"{k}: {values[k]}" for k in keys if isinstance(values.get(k), str)))
        if isinstance(policy := values.get("label_policy"), str):
            policies.setdefault(policy, []).append(task)
    lines += [f"- **label policy** ({', '.join(tasks)}): {policy}" for policy, tasks in policies.items()]
    return lines


def plot_lines(out: Path, tasks: list[str]) -> list[str]:
    """Markdown for each task's plots: the first shown inline, every one linked (paths relative to ``out``)."""
    lines = []
    for task in tasks:
        folder = out / "eval" / f"{task}_plots"
        pngs = [p.relative_to(out).as_posix() for p in sorted(folder.glob("*.png"))] if folder.is_dir() else []
        if pngs:
            lines += [f"### {PLOTS.get(task, task)}", "", f"![{task}]({pngs[0]})", "",
                      *[f"- [{p}]({p})" for p in pngs], ""]
    return lines


def write_report(path: Path, options: DemoOptions, recipe: Path, rows: list[ResultRow], metrics: dict[str, Metrics],
                 stages: list[Stage], total: float) -> Path:
    """DIR/report.md: the results table, each task's protocol, links to the plots, the stage timings. ``recipe``:
    the training recipe (relative to the repository)."""
    from medclr.atomic import atomic_path

    out = path.parent
    about = out / "world" / "world.json"
    incidental = about.is_file() and bool(json.loads(about.read_text()).get("incidental"))
    world = f"the `{options.preset}` world" + (" with incidental findings (`medclr synth --incidental`)" if incidental
                                                 else "")
    lines = [f"# medclr demo: {world}", "",
             f"Recipe `{recipe}`" + (f" with `run.max_steps={options.steps}`" if options.steps else "")
             + f"; world seed {options.seed}; {options.bootstrap} bootstrap replicates.", "",
             "## Results", "", markdown_table(rows), ""]
    lines += ["Simple baselines: `data_cards/synth.md`, \"Simple baselines\" (logistic regression on the seed-0 demo "
              "world, test AUROC on its patient-level test split); shown only for the `demo` preset.", ""]
    lines += ["## Protocols", "", *protocol_lines(metrics), "", "## Plots", "", *plot_lines(out, list(metrics))]
    lines += ["## Stages", "", "| stage | status | seconds | detail |", "|---|---|---:|---|"]
    lines += [f"| {s.name} | {s.status} | {s.seconds:.1f} | {s.detail} |" for s in stages]
    lines += [f"| total | | {total:.1f} | |", "", "Open the app on this run:", "",
              f"    medclr app --run {out / 'run'} --index {out / 'index'}", ""]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path
