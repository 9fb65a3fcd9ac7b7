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

The eval and embed stages share one :class:`~medclr.eval.tasks.EvalSession`: the run's model is loaded once and
the paired manifest's test split embedded once for the four tasks on it (run one by one, each ``medclr eval``
reloaded the model and re-embedded the split: ~20 s a task on 2 cores). When the embed stage has to be (re)built
too, the session embeds the whole paired manifest once, in the first eval stage that needs embeddings, and takes
the test split from it; the embed stage then only writes the file. The numbers of a task are those of ``medclr
eval`` on the same run up to the last float32 bits of the vectors (see ``EvalSession``).

The results table and ``DIR/report.md`` are :mod:`medclr.demo_report` (its names are importable from here too).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from medclr.demo_report import (
    COLUMNS,
    HEADLINE,
    PLOTS,
    SYNTH_CARD,
    ResultRow,
    card_baselines,
    chance_level,
    markdown_table,
    plot_lines,
    protocol_lines,
    render_table,
    render_timings,
    results_rows,
    table_cells,
    write_report,
)
from medclr.errors import MedclrError, MedclrInputError

if TYPE_CHECKING:
    from medclr.eval.tasks import EvalSession

__all__ = [  # this module's public names and medclr.demo_report's (re-exported)
    "COLUMNS", "EVAL_TASKS", "HEADLINE", "PLOTS", "RECIPES", "REPO_ROOT", "SYNTH_CARD", "DemoOptions", "DemoPaths",
    "DemoResult", "Outcome", "ResultRow", "Stage", "card_baselines", "chance_level", "checkpoint_step",
    "checkpoint_time", "markdown_table", "plot_lines", "protocol_lines", "render_table", "render_timings",
    "results_rows", "run_demo", "table_cells", "train_overrides", "up_to_date", "write_report",
]

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"demo": REPO_ROOT / "configs" / "train" / "demo.yaml", "tiny": REPO_ROOT / "configs" / "train" / "tiny.yaml"}
EVAL_TASKS = ("zeroshot-cxr", "zeroshot-ecg", "zeroshot-joint", "retrieval", "grounding")
Preset = Literal["demo", "tiny"]
Status = Literal["built", "reused", "resumed", "failed"]
Say = Callable[[str], None]
Metrics = dict[str, Any]


@dataclass(frozen=True)
class DemoOptions:
    """What ``medclr demo`` was asked for. ``steps`` overrides the recipe's ``run.max_steps``; ``overrides`` are
    more ``--set KEY=VALUE`` changes of the recipe (not of the manifest or the run directory, which the demo owns);
    ``skip_train`` uses the run as it is (it must have a checkpoint); ``bootstrap``: CI replicates of every
    metric."""

    out: Path = Path("runs/demo_job")
    preset: Preset = "demo"
    steps: int | None = None
    overrides: tuple[str, ...] = ()
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


@dataclass
class Outcome:
    """What building a stage did: ``built`` unless it says otherwise, and a short detail for the log and report."""

    status: Status = "built"
    detail: str = ""


class _Stages:
    """Runs the stages one after another, times each and says what it is doing."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.done: list[Stage] = []

    def run(self, name: str, doing: str, build: Callable[[], Outcome], reuse: str | None = None) -> None:
        """Stage ``name``: ``reuse`` is None when its output must be (re)built by ``build()``, else the detail of the
        output found (the stage is ``reused``). A stage that raises says how long it ran, and the error goes on."""
        self.say(f"[{len(self.done) + 1}] {name}: {doing}")
        start = time.perf_counter()
        try:
            outcome = Outcome("reused", reuse) if reuse is not None else build()
        except BaseException:
            self.say(f"    {name}: stopped after {time.perf_counter() - start:.1f} s")
            raise
        seconds = time.perf_counter() - start
        self.done.append(Stage(name, outcome.status, seconds, outcome.detail))
        detail = f" ({outcome.detail})" if outcome.detail else ""
        self.say(f"    {name}: {outcome.status} in {seconds:.1f} s{detail}")


def run_demo(options: DemoOptions, say: Say = log.info) -> DemoResult:
    """Run (or finish) the demo into ``options.out``; see the module docstring."""
    from medclr.eval.tasks import EvalSession

    if options.preset not in RECIPES:
        raise MedclrInputError(None, f"unknown demo preset {options.preset!r}", f"choose one of {', '.join(RECIPES)}")
    if options.steps is not None and options.steps < 1:
        raise MedclrInputError(None, f"--steps {options.steps}", "pass a positive number of training steps")
    _check_overrides(options)
    paths, stages, start = DemoPaths(Path(options.out)), _Stages(say), time.perf_counter()
    if options.skip_train and checkpoint_step(paths.run) is None:
        raise MedclrInputError(paths.run, "--skip-train: no trained run (no checkpoint) to evaluate",
                               "run `medclr demo` once without --skip-train")
    _world(paths, options, stages)
    _prepare(paths, options, stages)
    _train(paths, options, stages)
    # made after training (it reads the checkpoint it ends with); loads nothing until a stage needs the model
    session = EvalSession(paths.run, embed_all_rows=not up_to_date(paths.embeddings, paths.run, paths.paired))
    metrics: dict[str, Metrics] = {}
    for task in EVAL_TASKS:
        _evaluate(paths, options, stages, session, task, metrics)
    _embed(paths, options, stages, session)
    _index(paths, stages)
    rows = results_rows(metrics, card_baselines() if options.preset == "demo" else {})
    app = f"medclr app --run {paths.run} --index {paths.index}"
    total = time.perf_counter() - start

    def report() -> Outcome:
        recipe = RECIPES[options.preset].relative_to(REPO_ROOT)
        write_report(paths.report, options, recipe, rows, metrics, stages.done, total)
        return Outcome()

    stages.run("report", f"writing {paths.report}", report)
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
    found = None
    if marker.is_file():
        world = json.loads(marker.read_text())
        if world.get("preset") != options.preset or world.get("seed") != options.seed:
            raise MedclrInputError(paths.world, f"holds the {world.get('preset')} world (seed {world.get('seed')}), "
                                   f"not the {options.preset} world (seed {options.seed})",
                                   "pass another --out, or the --preset it was made with")
        found = f"{world.get('patients')} patients"

    def build() -> Outcome:
        from medclr.synth.world import generate_world

        summary = generate_world(paths.world, preset=options.preset, seed=options.seed, workers=options.workers,
                                 progress=options.progress)
        return Outcome(detail=f"{summary.n_patients} patients, {summary.n_cxr} X-rays, {summary.n_ecg} ECGs")

    estimate = " (2-4 min on 2 cores)" if options.preset == "demo" and found is None else ""
    stages.run("world", f"the {options.preset} synthetic world in {paths.world}{estimate}", build, found)


def _prepare(paths: DemoPaths, options: DemoOptions, stages: _Stages) -> None:
    def build(source: str, root: Path, out: Path) -> Outcome:
        from medclr.data.prepare import PrepareOptions, prepare

        report = prepare(source, PrepareOptions(root=root, workers=options.workers, progress=options.progress), out)
        return Outcome(detail=f"{report.n_rows} studies, {report.n_quarantined} quarantined")

    for name, source, root, out in (("prepare", "synth", paths.world, paths.paired),
                                    ("prepare-ms", "ms-cxr", paths.world / "ms-cxr", paths.ms)):
        stages.run(name, f"medclr prepare {source} --root {root} --out {out}",
                   partial(build, source, root, out), "" if out.is_file() else None)


DEMO_OWNED_KEYS = ("data.manifest", "run.out_dir", "run.max_steps")


def _check_overrides(options: DemoOptions) -> None:
    owned = [o for o in options.overrides if o.split("=", 1)[0].strip() in DEMO_OWNED_KEYS]
    if owned:
        raise MedclrInputError(None, f"--set {' '.join(owned)}: the demo sets {', '.join(DEMO_OWNED_KEYS)} itself",
                               "choose the output directory with --out and the steps with --steps")


def train_overrides(paths: DemoPaths, options: DemoOptions) -> list[str]:
    """The ``--set`` overrides the demo trains the recipe with."""
    _check_overrides(options)
    overrides = [f"data.manifest={paths.paired}", f"run.out_dir={paths.run}", f"run.progress={options.progress}"]
    steps = [f"run.max_steps={options.steps}"] if options.steps is not None else []
    return overrides + steps + list(options.overrides)


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
    found = (f"--skip-train: checkpoint at step {done}" if options.skip_train
             else f"finished: checkpoint at step {done}" if done is not None and done >= cfg.run.max_steps else None)

    def build() -> Outcome:
        from medclr.train import train

        resume = paths.run if (paths.run / "config.yaml").is_file() else None
        result = train(cfg, resume=resume)
        loss = f"{result.last_loss:.4f}" if result.last_loss is not None else "n/a"
        return Outcome("resumed" if resume is not None else "built",
                       f"{result.steps} steps, last loss {loss}" + (f", resumed from step {done}" if resume else ""))

    import torch

    on_cpu = cfg.run.device == "cpu" or not torch.cuda.is_available()
    minutes = cfg.run.max_steps / 60  # a demo step on 2 cores: 0.9-2.9 s in bf16 (EPYC to Xeon, as measured
    # 2026-12-05..07), 1.6-2.3 s (AVX-512: EPYC to a Xeon without AVX512-BF16) - 2.5 s (AVX2) in fp32
    estimate = (f" (~{0.9 * minutes:.0f}-{2.9 * minutes:.0f} min on 2 cores with bf16, by CPU; in float32 "
                f"~{1.6 * minutes:.0f}-{2.3 * minutes:.0f} min with AVX-512, "
                f"~{2.5 * minutes:.0f} min with AVX2 only)" if options.preset == "demo" and done is None and on_cpu
                else "")
    stages.run("train", f"{recipe.relative_to(REPO_ROOT)}, {cfg.run.max_steps} steps -> {paths.run}{estimate}", build,
               found)


def _evaluate(paths: DemoPaths, options: DemoOptions, stages: _Stages, session: EvalSession, task: str,
              metrics: dict[str, Metrics]) -> None:
    """Run one evaluation task through ``session`` (or read its up-to-date metrics file) into ``metrics[task]``; a
    task that fails is left out and the demo goes on."""
    from medclr.eval.tasks import EvalRequest, evaluate, protocol_version

    out = paths.metrics(task)
    manifest = paths.ms if task == "grounding" else paths.paired
    stored = _read_metrics(out) if up_to_date(out, paths.run, manifest) else None
    fresh = stored is not None and stored.get("protocol_version", 1) == protocol_version(task)  # else recomputed
    if stored is not None and fresh:
        metrics[task] = stored

    def build() -> Outcome:
        request = EvalRequest(paths.run, manifest, task, out, reps=options.bootstrap, progress=options.progress)
        try:
            metrics[task] = evaluate(request, session=session)
        except MedclrError as err:
            return Outcome("failed", str(err))
        return Outcome()

    stages.run(f"eval:{task}", f"medclr eval {paths.run} --task {task} --manifest {manifest}", build,
               "" if fresh else None)


def _read_metrics(path: Path) -> Metrics | None:
    """A metrics file's contents, or None when it cannot be read as a JSON object (it is then recomputed)."""
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return values if isinstance(values, dict) else None


def _embed(paths: DemoPaths, options: DemoOptions, stages: _Stages, session: EvalSession) -> None:
    def build() -> Outcome:
        from medclr.eval.embeddings import save_embeddings

        emb = session.embeddings(paths.paired, progress=options.progress)  # every row (maybe embedded by an eval)
        save_embeddings(emb, paths.embeddings)
        return Outcome(detail=f"{len(emb)} studies")

    stages.run("embed", f"medclr embed {paths.run} --manifest {paths.paired} --out {paths.embeddings}", build,
               "" if up_to_date(paths.embeddings, paths.run, paths.paired) else None)


def _index(paths: DemoPaths, stages: _Stages) -> None:
    index_json = paths.index / "index.json"

    def build() -> Outcome:
        from medclr.index import build_index

        return Outcome(detail=f"{len(build_index(paths.embeddings, paths.index).ids)} studies")

    fresh = index_json.is_file() and index_json.stat().st_mtime > paths.embeddings.stat().st_mtime
    stages.run("index", f"medclr index {paths.embeddings} --out {paths.index}", build, "" if fresh else None)
