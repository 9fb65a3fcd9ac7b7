"""``medclr eval``: run one evaluation task on a trained run and a manifest, write flat metrics and plots.

``evaluate(EvalRequest(run_dir, manifest, task))`` loads the run's model once, embeds the evaluation split(s) of
the manifest exactly as training preprocessed them (:mod:`medclr.eval.embeddings`), runs the task and returns
its metrics; with ``out`` set they go to ``out`` (JSON, flat keys, written atomically) and plots to the folder
``<out stem>_plots/`` beside it. Every metrics file states its protocol: the task, split(s), prompts, label
columns, label policy, run, checkpoint and objective.

**Several tasks on one run.** ``evaluate(request, session)`` takes the model and the embeddings from an
:class:`EvalSession`, which loads the run's checkpoint once and embeds each (manifest, splits, max rows) once, so
a caller that runs several tasks (``medclr demo``: four tasks on one manifest, then the whole manifest for the
index) pays for neither twice. Without a session ``evaluate`` opens one for the request alone: one code path, so
the metrics are the same either way.

Tasks (registry ``TASKS``): ``zeroshot-cxr``, ``zeroshot-ecg``, ``zeroshot-joint``, ``retrieval``,
``grounding``, ``probe``, ``diagnostics``.

**Evaluation split.** ``test`` by default (PTB-XL: fold 10). On a PTB-XL manifest whose fold 10 has fewer than
``SMALL_TEST_ROWS`` rows (the small real excerpt) folds 9 and 10 are pooled, and the metrics say so.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medclr.atomic import atomic_path
from medclr.data.manifest import read_manifest
from medclr.errors import MedclrError, MedclrInputError
from medclr.eval.embeddings import Embeddings, TokenGrids
from medclr.eval.grounding_maps import MapReadout
from medclr.eval.grounding_metrics import POINTING_TOLERANCE_PX
from medclr.eval.prompts import PromptSet, Query, default_prompts, load_prompts
from medclr.losses.local import LocalAlignment
from medclr.models import MedClr
from medclr.registry import Registry

log = logging.getLogger(__name__)

SMALL_TEST_ROWS = 200
PROTOCOL_VERSIONS: dict[str, int] = {"grounding": 2}
"""Each task's protocol version, written to its metrics files (``protocol_version``) and raised when a task's
protocol changes what its numbers mean, so that ``medclr demo`` recomputes older files instead of reusing them.
Grounding 2 (2026-12-07): cosine maps and headline means over MS-CXR's eight findings (1: contribution maps where
exact, every phrase). Tasks not listed are at 1."""


def protocol_version(task: str) -> int:
    """The current protocol version of ``task`` (:data:`PROTOCOL_VERSIONS`)."""
    return PROTOCOL_VERSIONS.get(task, 1)
Metrics = dict[str, Any]
EmbeddingKey = tuple[Path, tuple[str, ...] | None, int | None]  # (manifest, splits (None: all rows), max_rows)


@dataclass
class EvalRequest:
    """What to evaluate and how; the CLI fills it from its flags."""

    run_dir: Path
    manifest: Path
    task: str
    out: Path | None = None
    splits: list[str] | None = None  # None: the default evaluation split (module docstring)
    prompts: Path | None = None  # a prompt file; None: the task's default
    checkpoint: str = "best"
    reps: int = 1000  # bootstrap replicates (0: no CIs)
    seed: int = 0
    max_rows: int | None = None
    batch_size: int = 64
    plots: bool = True
    progress: bool = True
    device: str = "cpu"
    pointing_tolerance: float = POINTING_TOLERANCE_PX  # grounding: the tolerant pointing game's pixels (0: strict only)
    grounding_map: MapReadout = "cosine"  # grounding maps: cosine (MS-CXR's protocol) | contribution | auto
    grounding_smooth: float = 0.0  # grounding: Gaussian blur of the X-ray token grid, sigma in cells (0: none)


class EvalSession:
    """One run's model and embeddings, shared by every task evaluated through the session.

    The model (``load_model(run_dir, checkpoint, device)``) is loaded on first use; :meth:`embeddings` embeds each
    ``(manifest, splits, max_rows)`` once and hands the same :class:`~medclr.eval.embeddings.Embeddings` to every
    later caller (the tasks only read them). On the demo world (2 cores) a model load plus a test-split embedding
    cost ~20 s per task, the whole paired manifest ~120 s (``medclr demo`` stage timings).

    ``embed_all_rows``: embed each manifest whole (all splits, in manifest order) once and take any split from it
    (:meth:`Embeddings.subset`, same rows in the same order as embedding the split alone). ``medclr demo`` sets it
    when it also writes the whole manifest's embeddings for the index, so the test split is not embedded twice.
    In eval mode no layer mixes the rows of a batch, but a row then shares its batch with other rows than in a
    split-only pass (other batch shapes, other report padding), so its vectors may differ in the last float32 bits.
    ``model``: an already loaded model of this run and checkpoint (nothing is loaded then).
    """

    def __init__(self, run_dir: Path, checkpoint: str = "best", device: str = "cpu", *, embed_all_rows: bool = False,
                 model: MedClr | None = None) -> None:
        self.run_dir, self.checkpoint, self.device = Path(run_dir), checkpoint, device
        self.embed_all_rows = embed_all_rows
        self._model = model
        self._embeddings: dict[EmbeddingKey, Embeddings] = {}
        self._grids: dict[tuple[EmbeddingKey, tuple[str, ...]], TokenGrids] = {}

    @classmethod
    def for_request(cls, request: EvalRequest, model: MedClr | None = None) -> EvalSession:
        """A session for ``request``'s run, checkpoint and device alone (what ``evaluate(request)`` uses)."""
        return cls(request.run_dir, request.checkpoint, request.device, model=model)

    @property
    def model(self) -> MedClr:
        """The run's model in eval mode, loaded on first use."""
        if self._model is None:
            from medclr.train.checkpoint import load_model

            self._model = load_model(self.run_dir, checkpoint=self.checkpoint, device=self.device)
        return self._model

    def check(self, request: EvalRequest) -> None:
        """Refuse a request for another run, checkpoint or device than the session's model."""
        mine = (self.run_dir.resolve(), self.checkpoint, self.device)
        if mine != (Path(request.run_dir).resolve(), request.checkpoint, request.device):
            raise MedclrError(f"the evaluation session holds run {self.run_dir} (checkpoint {self.checkpoint}, "
                              f"device {self.device}); the request asks for {request.run_dir} (checkpoint "
                              f"{request.checkpoint}, device {request.device})")

    def embeddings(self, manifest: Path, splits: list[str] | None = None, *, max_rows: int | None = None,
                   batch_size: int = 64, progress: bool = True) -> Embeddings:
        """The embeddings of ``splits`` (None: every row) of ``manifest``, computed on first request only.

        ``batch_size`` and ``progress`` apply to the first request of a key (they do not change the rows)."""
        key: EmbeddingKey = (Path(manifest), tuple(splits) if splits else None, max_rows)
        if key in self._embeddings:
            return self._embeddings[key]
        if self.embed_all_rows and splits and max_rows is None:
            whole = self.embeddings(manifest, None, batch_size=batch_size, progress=progress)
            mask = whole.rows["split"].astype(str).isin(splits).to_numpy()  # [n_all] bool
            if mask.any():  # else embed the split below: it raises the usual "no rows in split(s)" error
                part = whole.subset(mask)
                part.meta = {**whole.meta, "splits": list(splits)}
                self._embeddings[key] = part
                return part
        from medclr.eval import embeddings as embedding_module  # looked up per call (tests count the calls)

        self._embeddings[key] = embedding_module.embed_manifest(
            self.model, self.run_dir, manifest, splits=splits, batch_size=batch_size, max_rows=max_rows,
            progress=progress)
        return self._embeddings[key]

    def token_grids(self, manifest: Path, splits: list[str], modalities: list[str], *, max_rows: int | None = None,
                    batch_size: int = 64, progress: bool = True) -> TokenGrids:
        """The unit token grids of ``modalities`` on the rows :meth:`embeddings` gives for the same ``splits`` and
        ``max_rows`` (:func:`~medclr.eval.embeddings.embed_token_grids`), computed on first request only."""
        key = ((Path(manifest), tuple(splits), max_rows), tuple(modalities))
        if key not in self._grids:
            from medclr.eval.embeddings import embed_token_grids

            self._grids[key] = embed_token_grids(self.model, self.run_dir, manifest, modalities, splits=splits,
                                                 batch_size=batch_size, max_rows=max_rows, progress=progress)
        return self._grids[key]


@dataclass
class EvalContext:
    """The loaded model, the manifest's evaluation split(s) and their embeddings (computed once, by ``session``:
    a session of its own for ``request`` and ``model`` when none is given)."""

    request: EvalRequest
    model: MedClr
    splits: list[str]
    split_note: str
    protocol: dict[str, Any] = field(default_factory=dict)  # protocol statements the task adds
    session: EvalSession | None = None

    @cached_property
    def embeddings(self) -> Embeddings:
        return self.embed(self.splits)

    def embed(self, splits: list[str]) -> Embeddings:
        r = self.request
        if self.session is None:
            self.session = EvalSession.for_request(r, model=self.model)
        return self.session.embeddings(r.manifest, splits, max_rows=r.max_rows, batch_size=r.batch_size,
                                       progress=r.progress)

    def token_grids(self, modalities: list[str]) -> TokenGrids:
        """The unit token grids of ``modalities`` on the rows of :attr:`embeddings`, in the same order."""
        r, emb = self.request, self.embeddings
        assert self.session is not None  # set by self.embeddings
        grids = self.session.token_grids(r.manifest, self.splits, modalities, max_rows=r.max_rows,
                                         batch_size=r.batch_size, progress=r.progress)
        if grids.study_ids != [str(s) for s in emb.rows["study_id"]]:
            raise MedclrError(f"{r.manifest}: the token grids and the embeddings hold different rows; embed the "
                              "split again (a stale session?)")
        return grids

    def training_images(self) -> set[Path]:
        """Resolved X-ray paths of the run's training split (from the training manifest its config names; empty
        when that manifest is gone), so benchmarks without a split of their own can leave them out."""
        from medclr.config import load_config

        data = load_config(self.request.run_dir / "config.yaml").data
        if not Path(data.manifest).is_file():
            return set()
        m = read_manifest(data.manifest)
        rows = m.frame[(m.frame["split"] == data.train_split) & m.frame["cxr_path"].notna()]
        return {m.resolve("cxr", str(p)).resolve() for p in rows["cxr_path"]}

    @property
    def plots_dir(self) -> Path | None:
        r = self.request
        if r.out is None or not r.plots:
            return None
        folder = r.out.with_name(f"{r.out.stem}_plots")
        folder.mkdir(parents=True, exist_ok=True)
        return folder


Task = Callable[[EvalContext], Metrics]
TASKS: Registry[Task] = Registry("evaluation task")


def default_splits(manifest: Path) -> tuple[list[str], str]:
    """The evaluation split(s) of a manifest and a sentence saying why (module docstring)."""
    m = read_manifest(manifest)
    counts = m.frame["split"].astype(str).value_counts()
    if "test" not in counts:
        return sorted(counts.index), f"no 'test' split: all rows ({', '.join(sorted(counts.index))})"
    if m.info.source == "ptbxl" and counts["test"] < SMALL_TEST_ROWS and "val" in counts:
        return ["val", "test"], (f"PTB-XL excerpt: fold 10 has only {counts['test']} rows, so folds 9-10 (val + "
                                 f"test, {counts['test'] + counts['val']} rows) are pooled")
    return ["test"], f"split 'test' ({counts['test']} rows)"


def evaluate(request: EvalRequest, session: EvalSession | None = None) -> Metrics:
    """Run ``request.task``; see the module docstring. ``session``: the model and embeddings to reuse (it must hold
    the request's run, checkpoint and device); None: a session for this request alone."""
    if request.task not in TASKS:
        raise MedclrError(f"unknown task '{request.task}'; valid: {', '.join(TASKS.names())}")
    if not request.manifest.is_file():
        raise MedclrInputError(request.manifest, "manifest not found", "write one with `medclr prepare`")
    splits, note = (request.splits, f"split(s) {', '.join(request.splits)} (as requested)") if request.splits \
        else default_splits(request.manifest)
    if session is None:
        session = EvalSession.for_request(request)
    session.check(request)
    ctx = EvalContext(request, session.model, splits, note, session=session)
    metrics = TASKS.get(request.task)(ctx)
    header: Metrics = {
        "task": request.task, "protocol_version": protocol_version(request.task), "run_dir": str(request.run_dir),
        "checkpoint": request.checkpoint,
        "manifest": str(request.manifest), "splits": ",".join(splits), "split_protocol": note,
        "objective": _objective(request.run_dir), **ctx.protocol,
    }
    result = {**header, **metrics}
    if request.out is not None:
        with atomic_path(request.out) as tmp:
            tmp.write_text(json.dumps(result, indent=1, default=_json_default, allow_nan=True) + "\n")
    return result


def _objective(run_dir: Path) -> str:
    from medclr.config import load_config

    return load_config(run_dir / "config.yaml").loss.name


def _local_alignment(run_dir: Path) -> LocalAlignment | None:
    """The local word-region term the run trained with (``loss.kwargs.local_weight > 0``), else None."""
    from medclr.config import load_config
    from medclr.train.parts import build_loss

    loss = build_loss(load_config(run_dir / "config.yaml"))
    local = getattr(loss, "local", None)
    return local if isinstance(local, LocalAlignment) and loss.token_modalities else None


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# --- prompts and label columns ------------------------------------------------------------------------------------

def task_prompts(ctx: EvalContext, query: Query) -> PromptSet:
    """``--prompts`` file, else :func:`~medclr.eval.prompts.default_prompts` for the manifest."""
    if ctx.request.prompts is None:
        return default_prompts(query, read_manifest(ctx.request.manifest).info)
    prompts = load_prompts(ctx.request.prompts)
    if prompts.query != query:
        raise MedclrError(f"{ctx.request.prompts}: a '{prompts.query}' prompt file; this task queries '{query}'")
    return prompts


def zero_shot_task(query: Query) -> Task:
    def run(ctx: EvalContext) -> Metrics:
        from medclr.eval.zero_shot import zero_shot

        prompts = task_prompts(ctx, query)
        result = zero_shot(ctx.model, ctx.embeddings, prompts, reps=ctx.request.reps, seed=ctx.request.seed)
        ctx.protocol["label_policy"] = "; ".join(f"{k}: {v}" for k, v in ctx.embeddings.meta["label_policy"].items())
        if ctx.plots_dir is not None and result.labels:
            from medclr.eval.plots import roc_curves_png

            roc_curves_png(result.targets, result.scores, result.labels, ctx.plots_dir / "roc.png",
                           f"zero-shot {query}: ROC on {', '.join(ctx.splits)}")
        return result.metrics
    return run


TASKS.register("zeroshot-cxr")(zero_shot_task("cxr"))
TASKS.register("zeroshot-ecg")(zero_shot_task("ecg"))
TASKS.register("zeroshot-joint")(zero_shot_task("joint"))


@TASKS.register("retrieval")
def retrieval_task(ctx: EvalContext) -> Metrics:
    """Every ordered modality pair and the two-to-one tasks; identical report texts count as the same item. A run
    trained with GLoRIA's local term is also ranked by its local score (keys ``..._local``,
    :func:`medclr.eval.retrieval.local_retrieval_metrics`)."""
    from medclr.eval.retrieval import LOCAL_SUFFIX, local_retrieval_metrics, retrieval_metrics

    emb = ctx.embeddings
    groups = {}
    if "report" in emb.vectors:
        groups["report"] = pd.factorize(emb.rows["report"].fillna(""))[0]
    ctx.protocol["retrieval_protocol"] = (
        "exact ranks over all rows of the split that have the query and target modalities; the partner (or an "
        "identical report text) is the positive; ranks count candidates scoring strictly higher; chance "
        "recall@K = K/n; scores = the objective's own (cosine | Symile MIP | negative GRAM volume)")
    truth_columns = {m: [i for i, name in enumerate(emb.label_names) if name.startswith(f"{m}:")] for m in emb.vectors}
    truth = {m: emb.labels[:, columns] for m, columns in truth_columns.items() if columns}  # {m: [n, L_m]}
    if truth:
        ctx.protocol["retrieval_label_ceiling"] = (
            "recall@K/<task>_label_ceiling: recall@K of an oracle that knows the target's ground-truth labels ("
            + ", ".join(f"label/{m}:*, {len(truth_columns[m])} columns" for m in truth)
            + ") and nothing else: mean over queries of min(1, K / #targets with the same labels)")
    metrics = retrieval_metrics(emb.vectors, emb.present, emb.loss, groups=groups, reps=ctx.request.reps,
                                seed=ctx.request.seed, target_labels=truth)
    local = _local_alignment(ctx.request.run_dir)
    if local is not None and local.image in emb.vectors and local.text in emb.vectors:
        grids = ctx.token_grids([local.image, local.text])
        ctx.protocol["retrieval_local"] = (
            f"recall@K/{local.text}->{local.image}{LOCAL_SUFFIX} (and the other direction): the run trained GLoRIA's "
            f"local word-region term, so its pairs are also ranked by the local score Z (each word's attention-"
            f"weighted region context against the word, soft maximum over words; tau1, tau2 = "
            f"{local.temperatures[0]:g}, {local.temperatures[1]:g}) instead of the pooled score; same rows and "
            "positives")
        metrics.update(local_retrieval_metrics(
            grids.tokens[local.image], grids.tokens[local.text], grids.mask[local.text], local,
            rows=emb.present[local.image] & emb.present[local.text], groups=groups, reps=ctx.request.reps,
            seed=ctx.request.seed, target_labels=truth))
    if ctx.plots_dir is not None and "report" in emb.vectors and "cxr" in emb.vectors:
        from medclr.eval.plots import retrieval_examples_png

        retrieval_examples_png(emb, ctx.plots_dir / "retrieval_report_to_cxr.png", read_manifest(ctx.request.manifest))
    return metrics


@TASKS.register("diagnostics")
def diagnostics_task(ctx: EvalContext) -> Metrics:
    from medclr.eval.diagnostics import diagnostics

    return diagnostics(ctx.embeddings, ctx.request.seed)


@TASKS.register("probe")
def probe_task(ctx: EvalContext) -> Metrics:
    """Logistic regression on the training split's embeddings, scored on the evaluation split."""
    from medclr.eval.probe import linear_probe
    from medclr.eval.zero_shot import label_column

    test = ctx.embeddings
    train = ctx.embed(["train"])
    labels: dict[str, list[str]] = {}
    queries: tuple[Query, ...] = ("cxr", "ecg")
    for m in queries:
        if m not in test.vectors:
            continue
        columns = [label_column(test, x, (m,)) for x in task_prompts(ctx, m).labels]
        labels[m] = [c for c in columns if c is not None]
    ctx.protocol["probe_protocol"] = ("logistic regression (C=1) on frozen unit embeddings of split 'train' with "
                                      "1/10/100% of its labelled rows (stratified), AUROC on the evaluation split")
    return linear_probe(train, test, labels, reps=ctx.request.reps, seed=ctx.request.seed)


@TASKS.register("grounding")
def grounding_task(ctx: EvalContext) -> Metrics:
    from medclr.eval.grounding import evaluate_grounding_task

    return evaluate_grounding_task(ctx)


# --- terminal summary ----------------------------------------------------------------------------------------------

def summary_table(metrics: Metrics, max_rows: int = 60) -> str:
    """The headline numbers as an aligned two-column table, each with its CI when present."""
    skip = ("_ci_low", "_ci_high")
    headline = ("auroc", "recall@", "mrr/", "median_rank/", "chexpert5x200", "probe/", "cnr", "miou", "pointing_game",
                "gap/", "alignment/", "uniformity/", "effective_rank/", "ecg/")
    rows = []
    for key, value in metrics.items():
        if not isinstance(value, float | int) or key.endswith(skip) or not key.startswith(headline):
            continue
        if key.startswith("probe/") and "/auroc/" in key:
            continue
        low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
        text = f"{value:.3f}" if not math.isnan(value) else "nan"
        if isinstance(low, float) and isinstance(high, float) and not (math.isnan(low) or math.isnan(high)):
            text += f"  [{low:.3f}, {high:.3f}]"
        rows.append((key, text))
    if len(rows) > max_rows:
        rows = [*rows[:max_rows], ("...", f"{len(rows) - max_rows} more in the metrics file")]
    width = max((len(k) for k, _ in rows), default=10)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
