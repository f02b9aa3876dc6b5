"""The Ray engine (``run --engine ray``): the slides of a run screened on a Ray cluster, from one laptop to many
GPU machines, with the outputs of the local engine (leukoscan/engine.py).

Two Ray Data passes over actor pools that hold the models (one GPU each when the cluster has GPUs, else the
cores of one machine each):

1. plan: each slide with fields left is planned where the models are (``plan_slide``: the fields left, the
   slide's scale and colour from its sample fields; ``--force`` starts its journal afresh here);
2. screen: each row is one batch of one slide's fields, formed as the local engine forms them (``batches``:
   ``--batch`` fields, ``--batch-megapixels``), screened and journalled by an actor (``screen_batch``).

The driver feeds one progress bar from the rows that come back, and aggregates each slide as soon as its last
batch is back (``screen_slide`` with the plan and lazy models: it reads the journal, loads no model). The
outputs go to ``out`` as every node sees it: a path on a filesystem shared by the cluster.

A worker that dies has its batch retried by Ray on another actor (Ray Data restarts the actor, and retries its
tasks); a retried batch skips the fields its first try journalled, so a field is journalled once. Only this
module imports Ray, and only when the engine is chosen.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import ray
import ray.data

from leukoscan.config import MAX_MEGAPIXELS
from leukoscan.models import ModelFiles, Models
from leukoscan.records import SlideVerdict
from leukoscan.slide import Options, Slide, SlidePlan, SlideTask, batches, plan_slide, screen_batch, screen_slide


class ClusterUnreachable(ConnectionError):
    """The Ray cluster at ``--ray-address`` cannot be joined (none running there, or a wrong address)."""


@dataclass(frozen=True)
class ActorShape:
    """The model-holding actors a run asks of the cluster: how many, and the CPUs and GPUs of each."""

    actors: int
    cpus: float
    gpus: float

    @classmethod
    def for_cluster(cls, node_cpus: list[float], gpus: float, device: str) -> ActorShape:
        """One actor per GPU (``device`` auto or cuda) when the cluster has GPUs; else one per machine, with the
        cores of the smallest machine (``node_cpus``: each live node's CPUs) as its threads: on CPU, one
        process using all cores screens more fields per second than several sharing them
        (bench/results/workers.md)."""
        if gpus >= 1 and device != "cpu":
            return cls(int(gpus), 1, 1)
        per = max(1.0, min(node_cpus, default=1.0))
        return cls(max(1, sum(int(c // per) for c in node_cpus)), per, 0)

    @property
    def threads(self) -> int:
        """Torch threads in each actor: its CPUs (a GPU actor needs few)."""
        return max(1, int(self.cpus))

    def pool(self, actor: type, files: ModelFiles, max_megapixels: float, actors: int | None = None) -> dict:
        """``map_batches`` arguments for a pool of ``actors`` (default: all) of ``actor`` holding the models."""
        resources = {"num_cpus": self.cpus, "num_gpus": self.gpus} if self.gpus else {"num_cpus": self.cpus}
        return {
            "fn": actor,
            "batch_size": 1,
            "fn_constructor_kwargs": {"files": files, "threads": self.threads, "max_megapixels": max_megapixels},
            "compute": ray.data.ActorPoolStrategy(size=actors or self.actors),
            **resources,
        }


@dataclass
class PlanTask:
    """One slide to plan (a row of the plan pass)."""

    slide: Slide
    out: Path
    opts: Options


@dataclass
class PlanResult:
    """A slide's plan, and what screens it (``Models.description`` on the actor: its device, not the
    driver's); or the error that stopped it (its outputs could not be written, or anything else)."""

    plan: SlidePlan | None
    description: dict | None
    error: Exception | None = None


@dataclass
class BatchTask:
    """One batch of one slide's fields (a row of the screen pass): the slide's plan cut to these fields."""

    index: int
    out: Path
    opts: Options
    plan: SlidePlan


@dataclass
class BatchResult:
    """What came back of a batch: how many fields it held, or why its slide's outputs cannot be written."""

    index: int
    fields: int
    error: Exception | None = None


@dataclass
class SlideJob(SlideTask):
    """The driver's record of a slide: the task (the slide and where it goes), its plan, how many batches are still
    out."""

    plan: SlidePlan | None = None
    left: int = 0
    error: Exception | None = None


class _ModelActor:
    """An actor process holding the run's models, set up as every leukoscan process is."""

    def __init__(self, files: ModelFiles, threads: int, max_megapixels: float):
        from leukoscan import runtime
        from leukoscan.images import limit_megapixels

        runtime.setup()  # a Ray worker process: the set-up of an entry point
        limit_megapixels(max_megapixels)
        self.models = Models.from_files(files)
        runtime.use_threads(threads)  # after loading: Ultralytics' first import sets all the machine's cores


class Planner(_ModelActor):
    """Plans slides (``plan_slide``), one row each."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = []
        for blob in batch["task"]:
            task: PlanTask = pickle.loads(blob)
            try:
                plan = plan_slide(self.models, task.slide, task.out, task.opts)
                results.append(PlanResult(plan, self.models.description))
            except Exception as e:  # that slide fails, with one line; the others go on
                results.append(PlanResult(None, None, e))
        return {"index": batch["index"], "result": _blobs(results)}


class Screener(_ModelActor):
    """Screens batches of one slide's fields (``screen_batch``), one row each; the fields a first try of the
    batch journalled (before its worker died) are skipped."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from leukoscan.journal import finished_state, journal_path, read_states

        results = []
        for index, blob in zip(batch["index"], batch["task"]):
            task: BatchTask = pickle.loads(blob)
            try:
                path = journal_path(task.out)
                recorded = read_states(path.read_bytes()) if path.is_file() else {}
                left = [p for p in task.plan.todo if finished_state(recorded, p, task.opts.key, task.out) is None]
                if left:
                    screen_batch(self.models, task.out, task.opts, task.plan, left)
                results.append(BatchResult(int(index), len(task.plan.todo)))
            except Exception as e:  # that slide fails, with one line; the others go on
                results.append(BatchResult(int(index), len(task.plan.todo), e))
        return {"index": batch["index"], "result": _blobs(results)}


def _blobs(items: list) -> np.ndarray:
    """Each item pickled, as a column of a Ray Data batch."""
    column = np.empty(len(items), dtype=object)
    column[:] = [pickle.dumps(item) for item in items]
    return column


def screen_slides_on_ray(
    models: Models,
    tasks: list[SlideTask],
    opts: Options,
    bar,
    workers: int = 1,
    max_megapixels: float = MAX_MEGAPIXELS,
    address: str | None = None,
) -> list:
    """Screen each task's slide into its folder on a Ray cluster (``address``: ``auto``, ``ray://host:port`` or
    ``host:port``; none: a local Ray started here, on all cores, and stopped after; no Ray at all when nothing
    is left to screen, or the one this process is connected to). Returns the verdict
    for every slide whose outputs could be written, in the order given; the others get one error line each.
    ``models``: the run's (lazy) models, whose files the actors load; ``workers`` is the local engine's and
    is not used (the actors follow the cluster's resources)."""
    jobs = [SlideJob(task.slide, task.out) for task in tasks]
    overall = bar.add_task("all slides (Ray)", total=sum(len(job.slide.images) for job in jobs))
    todo = _plan_finished(models, jobs, opts)
    started = _connect(address) if todo else False  # nothing left to screen: no Ray, as no model
    try:
        description, shape = None, ActorShape(0, 0, 0)
        if todo:
            shape = _shape(models.files.device)
            bar.update(overall, description=f"all slides (Ray: {shape.actors} actors)")
            description = _plan(models, jobs, todo, opts, shape, max_megapixels)
        lazy = _aggregating_models(models, description)
        verdicts: dict[int, SlideVerdict] = {}
        for i in _screen(jobs, opts, models.files, shape, max_megapixels, lambda n: bar.advance(overall, n)):
            if (verdict := _aggregate(lazy, jobs[i], opts)) is not None:
                verdicts[i] = verdict
        return [verdicts[i] for i in sorted(verdicts)]
    finally:
        if started:
            ray.shutdown()


def _reachable(address: str | None, timeout: float = 10.0) -> None:
    """A ``ClusterUnreachable`` at once when ``address`` is a cluster's HOST:PORT that takes no connection (Ray
    itself would wait for it for minutes); ``auto``, ``ray://`` and no address are left to Ray."""
    import socket

    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        raise ClusterUnreachable(f"cannot join the Ray cluster at {address}: {e}") from None


def _connect(address: str | None) -> bool:
    """Join the cluster at ``address``, or start a local Ray (unless this process is already connected);
    quiet: the run's own bar and error lines are its output. True when this call connected."""
    # no usage statistics: Ray's own reporting, and Ray Data's queries of a Prometheus on localhost:9090 after
    # every dataset it runs (from a thread that outlives the run)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DATA_USAGE_DISABLED", "1")
    started = not ray.is_initialized()
    if started:
        # Ray's C++ core logs an error-level line for every actor pool Ray Data starts (their arguments are in
        # the object store, ray-project/ray#53727), and an info line saying so when told not to: the level is set
        # here, the info line dropped (a failure to connect still raises)
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        # no address: a Ray of this machine alone ("local"; None would join any cluster last started here)
        kwargs = {"address": address} if address else {"address": "local", "include_dashboard": False}
        _reachable(address)
        try:
            with _native_stderr_dropped():
                ray.init(**kwargs, logging_level=logging.ERROR, log_to_driver=False)
        except (ConnectionError, ValueError) as e:  # no cluster there; ray:// without the Ray Client installed
            raise ClusterUnreachable(f"cannot join the Ray cluster at {address}: {e}") from e
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return started


@contextmanager
def _native_stderr_dropped() -> Iterator[None]:
    """File descriptor 2 goes nowhere within the block (what native code writes there; Python's own
    ``sys.stderr`` is flushed first)."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _shape(device: str) -> ActorShape:
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    node_cpus = [n["Resources"].get("CPU", 0.0) for n in nodes if n["Resources"].get("CPU", 0.0) >= 1]
    return ActorShape.for_cluster(node_cpus, ray.cluster_resources().get("GPU", 0.0), device)


def _plan_finished(models: Models, jobs: list[SlideJob], opts: Options) -> list[int]:
    """Plan here the slides with nothing left to screen (``models`` lazy: none is loaded; their scale and colour
    are the last run's); returns the indices of the others (all with ``opts.force``), planned on the actors."""
    from leukoscan.journal import all_finished

    todo = [i for i, job in enumerate(jobs) if opts.force or not all_finished(job.out, job.slide.images, opts.key)]
    for job in (jobs[i] for i in sorted(set(range(len(jobs))) - set(todo))):
        try:
            job.plan = plan_slide(models, job.slide, job.out, opts)
        except Exception as e:  # reported when the slide is aggregated
            job.error = e
    return todo


def _plan(models: Models, jobs: list[SlideJob], todo: list[int], opts: Options, shape: ActorShape, max_megapixels):
    """Plan the slides ``todo`` (indices into ``jobs``) on the actors; returns what screened them (the actors'
    ``Models.description``: their device, not the driver's)."""
    rows = [{"index": i, "task": pickle.dumps(PlanTask(jobs[i].slide, jobs[i].out, opts))} for i in todo]
    planned = ray.data.from_items(rows).map_batches(
        **shape.pool(Planner, models.files, max_megapixels, min(shape.actors, len(todo)))
    )
    description = None
    for row in planned.iter_rows():
        result: PlanResult = pickle.loads(row["result"])
        job = jobs[int(row["index"])]
        job.plan, job.error = result.plan, result.error
        description = description or result.description
    return description


def _screen(jobs: list[SlideJob], opts: Options, files: ModelFiles, shape: ActorShape, max_megapixels, advance):
    """Screen every planned slide's fields on the actors, one batch a row; yields the index of each slide as its
    last batch comes back (at once for a slide with nothing left), ``advance`` told of every field done."""
    rows = []
    for i, job in enumerate(jobs):
        if job.plan is None:  # its outputs cannot be written (the plan pass said why)
            yield i
            continue
        advance(len(job.slide.images) - len(job.plan.todo))  # finished by an earlier run
        for fields in batches(job.plan.todo, job.plan.sizes, opts.batch, opts.batch_megapixels * 1e6):
            task = BatchTask(i, job.out, replace(opts, force=False), _cut(job.plan, fields))
            rows.append({"index": i, "task": pickle.dumps(task)})
            job.left += 1
        if not job.left:
            yield i
    if not rows:
        return
    screened = ray.data.from_items(rows).map_batches(**shape.pool(Screener, files, max_megapixels))
    for row in screened.iter_rows():
        result: BatchResult = pickle.loads(row["result"])
        job = jobs[result.index]
        job.error = job.error or result.error
        advance(result.fields)
        job.left -= 1
        if not job.left:
            yield result.index


def _cut(plan: SlidePlan, fields: list[Path]) -> SlidePlan:
    """``plan`` for ``fields`` alone (what ``screen_batch`` needs of it, and no more to ship)."""
    return SlidePlan(
        fields, plan.scale, plan.stain, {p: plan.stems[p] for p in fields}, {p: plan.sizes.get(p) for p in fields}
    )


def _aggregate(models: Models, job: SlideJob, opts: Options) -> SlideVerdict | None:
    """The slide's tables and verdict from its journal (``screen_slide`` with its plan), or one error line when
    its outputs cannot be written or an error stopped it (None)."""
    from leukoscan.engine import slide_failed

    try:
        if job.error is not None:
            raise job.error
        return screen_slide(models, job.slide, job.out, replace(opts, force=False), plan=job.plan)
    except Exception as e:  # as in the local engine
        slide_failed(job.out, e)
        return None


def _aggregating_models(models: Models, description: dict | None) -> Models:
    """The run's models (lazy: aggregating loads none) describing what screened the fields on the actors (their
    device: a GPU the driver may not have), when the actors screened any."""
    if description is None:
        return models
    described = replace(models)
    described.__dict__["description"] = description  # Models.description is a cached property: set once here
    return described
