"""``medclr demo``: the main job end to end on CPU, offline, re-runnable.

>>> from medclr.demo import DemoOptions, run_demo                          # doctest: +SKIP
>>> result = run_demo(DemoOptions(out=Path("runs/demo_job"), preset="tiny", steps=4))   # doctest: +SKIP
>>> [(s.name, s.status) for s in result.stages]                            # doctest: +SKIP

Stages, each timed, each skipped when its output is already there (so a re-run, or a run after a kill, only does
what is missing)::

    world        medclr synth --preset P --out DIR/world                    skip: DIR/world/world.json exists
    prepare      medclr prepare synth  --root DIR/world        -> DIR/world/paired.parquet   skip: it exists
    prepare-ms   medclr prepare ms-cxr --root DIR/world/ms-cxr -> DIR/world/ms.parquet       skip: it exists
    train        medclr train configs/train/P.yaml --set data.manifest=... run.out_dir=DIR/run [run.max_steps=N]
                 skip: checkpoints/latest is at run.max_steps; a partial run is resumed (``--resume``)
    eval:<task>  medclr eval DIR/run --task T -> DIR/eval/T.json (+ DIR/eval/T_plots/)
                 for zeroshot-cxr, zeroshot-ecg, zeroshot-joint, retrieval (paired.parquet), grounding (ms.parquet)
                 skip: the JSON exists and is newer than the run's checkpoint pointers and the manifest
    embed        medclr embed DIR/run --manifest paired.parquet -> DIR/embeddings.parquet   skip: likewise
    index        medclr index DIR/embeddings.parquet -> DIR/index           skip: newer than the embeddings
    report       the results table (printed) and DIR/report.md (always rewritten: it is cheap)

The table puts the simple baselines of ``data_cards/synth.md`` ("Simple baselines": logistic regression on 32 x 32
pixels / 62 ECG summary features, test AUROC on the patient-level test split of the seed-0 ``demo`` world) beside
the zero-shot AUROCs they can be compared with. They are read from the card, not restated here, and shown only for
the ``demo`` preset (the world they were measured on). Retrieval recalls and pointing games show instead the chance
level their metrics file states (K/n; ``<metric>_chance``).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medclr.errors import MedclrError, MedclrInputError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"demo": REPO_ROOT / "configs" / "train" / "demo.yaml", "tiny": REPO_ROOT / "configs" / "train" / "tiny.yaml"}
SYNTH_CARD = REPO_ROOT / "data_cards" / "synth.md"
EVAL_TASKS = ("zeroshot-cxr", "zeroshot-ecg", "zeroshot-joint", "retrieval", "grounding")
Preset = Literal["demo", "tiny"]
Status = Literal["built", "reused", "resumed", "failed"]
Say = Callable[[str], None]

# Metrics shown in the results table per task (full-match regexes; CIs come from <key>_ci_low/_ci_high).
_PAIRS_WITH_REPORTS = r"(report->cxr|cxr->report|report->ecg|ecg->report)"
HEADLINE: dict[str, tuple[str, ...]] = {
    "zeroshot-cxr": (r"auroc/[^/]+", "auroc_macro", "chexpert5x200/top1"),
    "zeroshot-ecg": (r"auroc/[^/]+", "auroc_macro"),
    "zeroshot-joint": (r"auroc/[^/]+",),
    "retrieval": (rf"recall@(1|10)/{_PAIRS_WITH_REPORTS}", r"recall@10/(cxr->ecg|ecg->cxr|\w+\+\w+->\w+)"),
    "grounding": ("cnr", "miou", "pointing_game", "ecg/cnr", "ecg/pointing_game_lead", "ecg/pointing_game_segment",
                  "ecg/lead_auroc"),
}
PLOTS = {"zeroshot-cxr": "ROC curves (X-ray zero-shot)", "zeroshot-ecg": "ROC curves (ECG zero-shot)",
         "zeroshot-joint": "ROC curves (joint zero-shot)", "retrieval": "retrieval examples",
         "grounding": "grounding overlays"}


@dataclass(frozen=True)
class DemoOptions:
    """What ``medclr demo`` was asked for. ``steps`` overrides the recipe's ``run.max_steps``; ``skip_train`` uses
    the run as it is (it must have a checkpoint); ``bootstrap``: CI replicates of every metric."""

    out: Path = Path("runs/demo_job")
    preset: Preset = "demo"
    steps: int | None = None
    skip_train: bool = False
    seed: int = 0
    bootstrap: int = 1000
    workers: int = 0
    progress: bool = True


@dataclass
class Stage:
    """One stage of the demo: what happened to it and how long it took."""

    name: str
    status: Status
    seconds: float
    detail: str = ""


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


@dataclass
class DemoResult:
    """What :func:`run_demo` did and wrote."""

    out: Path
    stages: list[Stage]
    rows: list[ResultRow]
    report: Path
    app_command: str
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def status(self, name: str) -> Status:
        return next(s.status for s in self.stages if s.name == name)

    @property
    def failed(self) -> list[Stage]:
        return [s for s in self.stages if s.status == "failed"]


@dataclass(frozen=True)
class DemoPaths:
    """Where each stage writes under ``out``."""

    out: Path

    @property
    def world(self) -> Path:
        return self.out / "world"

    @property
    def paired(self) -> Path:
        return self.world / "paired.parquet"

    @property
    def ms(self) -> Path:
        return self.world / "ms.parquet"

    @property
    def run(self) -> Path:
        return self.out / "run"

    @property
    def eval_dir(self) -> Path:
        return self.out / "eval"

    @property
    def embeddings(self) -> Path:
        return self.out / "embeddings.parquet"

    @property
    def index(self) -> Path:
        return self.out / "index"

    @property
    def report(self) -> Path:
        return self.out / "report.md"

    def metrics(self, task: str) -> Path:
        return self.eval_dir / f"{task}.json"


class _Stages:
    """Times each stage and says what it is doing."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.done: list[Stage] = []

    @contextmanager
    def stage(self, name: str, doing: str) -> Iterator[dict[str, Any]]:
        """``with stages.stage(name, "what") as s: ...; s["status"] = "reused"`` (default ``built``)."""
        state: dict[str, Any] = {"status": "built", "detail": ""}
        self.say(f"[{len(self.done) + 1}] {name}: {doing}")
        start = time.perf_counter()
        try:
            yield state
        except BaseException:
            self.say(f"    {name}: stopped after {time.perf_counter() - start:.1f} s")
            raise
        seconds = time.perf_counter() - start
        self.done.append(Stage(name, state["status"], seconds, state["detail"]))
        detail = f" ({state['detail']})" if state["detail"] else ""
        self.say(f"    {name}: {state['status']} in {seconds:.1f} s{detail}")


def run_demo(options: DemoOptions, say: Say = log.info) -> DemoResult:
    """Run (or finish) the demo into ``options.out``; see the module docstring."""
    if options.preset not in RECIPES:
        raise MedclrInputError(None, f"unknown demo preset {options.preset!r}", f"choose one of {', '.join(RECIPES)}")
    if options.steps is not None and options.steps < 1:
        raise MedclrInputError(None, f"--steps {options.steps}", "pass a positive number of training steps")
    paths, stages, start = DemoPaths(Path(options.out)), _Stages(say), time.perf_counter()
    if options.skip_train and checkpoint_step(paths.run) is None:
        raise MedclrInputError(paths.run, "--skip-train: no trained run (no checkpoint) to evaluate",
                               "run `medclr demo` once without --skip-train")
    _world(paths, options, stages)
    _prepare(paths, options, stages)
    _train(paths, options, stages)
    metrics = {task: m for task in EVAL_TASKS if (m := _evaluate(paths, options, stages, task)) is not None}
    _embed_and_index(paths, options, stages)
    rows = results_rows(metrics, card_baselines() if options.preset == "demo" else {})
    app = f"medclr app --run {paths.run} --index {paths.index}"
    total = time.perf_counter() - start
    with stages.stage("report", f"writing {paths.report}"):
        write_report(paths.report, options, rows, metrics, stages.done, total)
    result = DemoResult(paths.out, stages.done, rows, paths.report, app, metrics)
    say("\nresults (95% bootstrap CIs; baseline: data_cards/synth.md 'Simple baselines' for the demo world, else "
        "the chance level the metrics file states)\n" + render_table(rows))
    say("\ntimings\n" + render_timings(stages.done, time.perf_counter() - start))
    for stage in result.failed:
        say(f"failed: {stage.name}: {stage.detail}")
    say(f"\nreport: {paths.report}\nopen the app on this run:\n  {app}")
    return result


# --- stages ----------------------------------------------------------------------------------------------------------

def _world(paths: DemoPaths, options: DemoOptions, stages: _Stages) -> None:
    marker = paths.world / "world.json"
    estimate = " (~2.5 min on 2 cores)" if options.preset == "demo" and not marker.is_file() else ""
    with stages.stage("world", f"the {options.preset} synthetic world in {paths.world}{estimate}") as s:
        if marker.is_file():
            found = json.loads(marker.read_text())
            if found.get("preset") != options.preset or found.get("seed") != options.seed:
                raise MedclrInputError(paths.world, f"holds the {found.get('preset')} world (seed "
                                       f"{found.get('seed')}), not the {options.preset} world (seed {options.seed})",
                                       "pass another --out, or the --preset it was made with")
            s["status"], s["detail"] = "reused", f"{found.get('patients')} patients"
            return
        from medclr.synth.world import generate_world

        summary = generate_world(paths.world, preset=options.preset, seed=options.seed, workers=options.workers,
                                 progress=options.progress)
        s["detail"] = f"{summary.n_patients} patients, {summary.n_cxr} X-rays, {summary.n_ecg} ECGs"


def _prepare(paths: DemoPaths, options: DemoOptions, stages: _Stages) -> None:
    from medclr.data.prepare import PrepareOptions, prepare

    for name, source, root, out in (("prepare", "synth", paths.world, paths.paired),
                                    ("prepare-ms", "ms-cxr", paths.world / "ms-cxr", paths.ms)):
        with stages.stage(name, f"medclr prepare {source} --root {root} --out {out}") as s:
            if out.is_file():
                s["status"] = "reused"
                continue
            report = prepare(source, PrepareOptions(root=root, workers=options.workers, progress=options.progress),
                             out)
            s["detail"] = f"{report.n_rows} studies, {report.n_quarantined} quarantined"


def train_overrides(paths: DemoPaths, options: DemoOptions) -> list[str]:
    """The ``--set`` overrides the demo trains the recipe with."""
    overrides = [f"data.manifest={paths.paired}", f"run.out_dir={paths.run}", f"run.progress={options.progress}"]
    return overrides + ([f"run.max_steps={options.steps}"] if options.steps is not None else [])


def checkpoint_step(run: Path) -> int | None:
    """The step of the run's newest complete checkpoint (None: no checkpoint yet)."""
    from medclr.train.checkpoint import latest_checkpoint

    folder = latest_checkpoint(run) if run.is_dir() else None
    return int(json.loads((folder / "checkpoint.json").read_text())["step"]) if folder is not None else None


def checkpoint_time(run: Path) -> float:
    """When the run's checkpoints last changed (mtime of the ``best``/``latest`` pointers; 0 if none)."""
    pointers = [run / "checkpoints" / name for name in ("best", "latest")]
    return max((p.stat().st_mtime for p in pointers if p.is_file()), default=0.0)


def up_to_date(output: Path, run: Path, manifest: Path) -> bool:
    """``output`` exists and is newer than the run's checkpoints and the manifest it was computed from."""
    inputs = [checkpoint_time(run), manifest.stat().st_mtime if manifest.is_file() else 0.0]
    return output.is_file() and output.stat().st_mtime > max(inputs)


def _train(paths: DemoPaths, options: DemoOptions, stages: _Stages) -> None:
    from medclr.config import load_config

    recipe = RECIPES[options.preset]
    cfg = load_config(recipe, train_overrides(paths, options))
    done = checkpoint_step(paths.run)
    with stages.stage("train", f"{recipe.relative_to(REPO_ROOT)}, {cfg.run.max_steps} steps -> {paths.run}"
                      + (" (~7-9 min on 2 cores)" if options.preset == "demo" and done is None else "")) as s:
        if options.skip_train:
            s["status"], s["detail"] = "reused", f"--skip-train: checkpoint at step {done}"
            return
        if done is not None and done >= cfg.run.max_steps:
            s["status"], s["detail"] = "reused", f"finished: checkpoint at step {done}"
            return
        from medclr.train import train

        resume = paths.run if (paths.run / "config.yaml").is_file() else None
        result = train(cfg, resume=resume)
        loss = f"{result.last_loss:.4f}" if result.last_loss is not None else "n/a"
        s["status"] = "resumed" if resume is not None else "built"
        s["detail"] = f"{result.steps} steps, last loss {loss}" + (f", resumed from step {done}" if resume else "")


def _evaluate(paths: DemoPaths, options: DemoOptions, stages: _Stages, task: str) -> dict[str, Any] | None:
    """Run one evaluation task (or read its up-to-date metrics file); None when it failed (the demo goes on)."""
    from medclr.eval.tasks import EvalRequest, evaluate

    out = paths.metrics(task)
    manifest = paths.ms if task == "grounding" else paths.paired
    with stages.stage(f"eval:{task}", f"medclr eval {paths.run} --task {task} --manifest {manifest}") as s:
        if up_to_date(out, paths.run, manifest):
            s["status"] = "reused"
            metrics: dict[str, Any] = json.loads(out.read_text())
            return metrics
        try:
            return evaluate(EvalRequest(paths.run, manifest, task, out, reps=options.bootstrap,
                                        progress=options.progress))
        except MedclrError as err:
            s["status"], s["detail"] = "failed", str(err)
            return None


def _embed_and_index(paths: DemoPaths, options: DemoOptions, stages: _Stages) -> None:
    with stages.stage("embed", f"medclr embed {paths.run} --manifest {paths.paired} --out {paths.embeddings}") as s:
        if up_to_date(paths.embeddings, paths.run, paths.paired):
            s["status"] = "reused"
        else:
            from medclr.eval.embeddings import embed_manifest, save_embeddings
            from medclr.train.checkpoint import load_model

            emb = embed_manifest(load_model(paths.run), paths.run, paths.paired, progress=options.progress)
            save_embeddings(emb, paths.embeddings)
            s["detail"] = f"{len(emb)} studies"
    index_json = paths.index / "index.json"
    with stages.stage("index", f"medclr index {paths.embeddings} --out {paths.index}") as s:
        if index_json.is_file() and index_json.stat().st_mtime > paths.embeddings.stat().st_mtime:
            s["status"] = "reused"
        else:
            from medclr.index import build_index

            index = build_index(paths.embeddings, paths.index)
            s["detail"] = f"{len(index.ids)} studies"


# --- results ---------------------------------------------------------------------------------------------------------

def card_baselines(card: Path = SYNTH_CARD) -> dict[tuple[str, str], tuple[float, str]]:
    """``(task, metric) -> (AUROC, which baseline)`` from the "Simple baselines" table of ``data_cards/synth.md``.

    Card rows map to metrics as: a finding (``Cardiomegaly``) -> ``zeroshot-cxr`` ``auroc/Cardiomegaly`` (X-ray
    column); ``ECG CD (...)`` -> ``zeroshot-ecg`` ``auroc/CD`` (ECG column); ``joint: Heart Failure`` ->
    ``zeroshot-joint`` ``auroc/Heart Failure`` (the "both" column). Empty when the card or the table is missing.
    """
    if not card.is_file() or "## Simple baselines" not in (text := card.read_text()):
        return {}
    section = text.split("## Simple baselines", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("|")]
    out: dict[tuple[str, str], tuple[float, str]] = {}
    for line in lines[2:]:  # header, |---| rule
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) < 4:
            continue
        label, cxr, ecg, both = cells[:4]
        if label.startswith("ECG "):
            key, value, note = ("zeroshot-ecg", f"auroc/{label.split()[1]}"), ecg, "LR on 62 ECG summary features"
        elif label.startswith("joint: "):
            key, value, note = ("zeroshot-joint", f"auroc/{label[7:]}"), both, "LR on 32x32 pixels + ECG features"
        else:
            key, value, note = ("zeroshot-cxr", f"auroc/{label}"), cxr, "LR on 32x32 pixels"
        try:
            out[key] = (float(value), note)
        except ValueError:
            continue
    return out


def _count(values: dict[str, Any], task: str, key: str) -> str:
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
    if task == "grounding":
        return num("ecg/n" if key.startswith("ecg/") else "n_phrases")
    return num("n_rows")


def chance_level(values: dict[str, Any], task: str, key: str) -> tuple[float, str] | None:
    """The chance level a metric file states for ``key``: ``<key>_chance`` (grounding pointing games), or K/n for
    retrieval recall@K (the retrieval protocol: "chance recall@K = K/n")."""
    if isinstance(chance := values.get(f"{key}_chance"), int | float):
        return float(chance), "chance"
    match = re.fullmatch(r"recall@(\d+)/(.+)", key)
    if task == "retrieval" and match and isinstance(n := values.get(f"n/{match[2]}"), int | float) and n > 0:
        return min(1.0, int(match[1]) / float(n)), "chance K/n"
    return None


def results_rows(metrics: dict[str, dict[str, Any]], baselines: dict[tuple[str, str], tuple[float, str]]
                 ) -> list[ResultRow]:
    """The headline metrics of each task (``HEADLINE``) with their CIs, counts and a baseline: the data card's
    simple baseline where ``baselines`` has one, else the chance level the metrics file states."""
    rows = []
    for task, values in metrics.items():
        patterns = HEADLINE.get(task, ())
        for key, value in values.items():
            if (not isinstance(value, int | float) or isinstance(value, bool) or key.endswith(("_ci_low", "_ci_high"))
                    or not any(re.fullmatch(p, key) for p in patterns)):
                continue
            low, high = values.get(f"{key}_ci_low"), values.get(f"{key}_ci_high")
            ci = (float(low), float(high)) if isinstance(low, int | float) and isinstance(high, int | float) else None
            base = baselines.get((task, key)) or chance_level(values, task, key)
            rows.append(ResultRow(task, key, float(value), ci, _count(values, task, key),
                                  base[0] if base else None, base[1] if base else ""))
    return rows


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3f}"


COLUMNS = ("task", "metric", "value [95% CI]", "n", "baseline")


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


def protocol_lines(metrics: dict[str, dict[str, Any]]) -> list[str]:
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


def write_report(path: Path, options: DemoOptions, rows: list[ResultRow], metrics: dict[str, dict[str, Any]],
                 stages: list[Stage], total: float) -> Path:
    """DIR/report.md: the results table, each task's protocol, links to the plots, the stage timings."""
    from medclr.atomic import atomic_path

    out = path.parent
    lines = [f"# medclr demo: the `{options.preset}` world", "",
             f"Recipe `{RECIPES[options.preset].relative_to(REPO_ROOT)}`"
             + (f" with `run.max_steps={options.steps}`" if options.steps else "")
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
