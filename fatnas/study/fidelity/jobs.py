"""The study's work: architectures sampled within the budget, one job per (architecture, measure, seed), carried
out here or in a pool of spawned worker processes, each job's rows in fidelity.csv as it finishes.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import json
import multiprocessing
import os
import random
import signal
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pandas as pd

from ...estimate.base import make_estimator
from ...estimate.cost import Budget, analytic_cost
from ...estimate.data import DataSplit, settings_data
from ...estimate.proxy import ProxySettings, configure_threads
from ...estimate.zero_cost import BASELINES, PROXIES
from ...model.config import FATConfig
from ...model.space import SearchSpace
from ...model.variants import PUBLISHED
from ...runs.store import Run
from .settings import StudySettings
from .specs import (
    BASELINE,
    CSV_COLUMNS,
    MAX_DRAWS_PER_ARCH,
    SCORE,
    TRAIN,
    WEIGHT_SHARING,
    ZERO_COST,
    FidelityError,
)

# ---------------------------------------------------------------- architectures and jobs

def sample_architectures(space: SearchSpace, budget: Budget, count: int, seed: int) -> dict[str, FATConfig]:
    """`count` distinct configs drawn uniformly from `space` within `budget`, named arch00, arch01, ..."""
    rng, found = random.Random(seed), {}
    seen: set[str] = set()
    for _ in range(MAX_DRAWS_PER_ARCH * count):
        cfg = space.sample(lambda name, choices: rng.choice(list(choices)))
        key = json.dumps(cfg.to_dict(), sort_keys=True)
        if key in seen or not budget.fits(analytic_cost(cfg, space.resolution)):
            continue
        seen.add(key)
        found[f"arch{len(found):02d}"] = cfg
        if len(found) == count:
            return found
    raise FidelityError(f"found only {len(found)} distinct configs of space {space.name!r} within "
                        f"{budget.describe()}; ask for fewer --archs or loosen the budget")


def study_architectures(settings: StudySettings) -> dict[str, FATConfig]:
    """The sampled architectures, then the published FATs that fit the budget."""
    archs = sample_architectures(settings.space, settings.budget, settings.archs, settings.seed)
    if settings.references:
        for name in PUBLISHED:
            cfg = settings.space.published(name)
            if settings.budget.fits(analytic_cost(cfg, settings.space.resolution)):
                archs[name] = cfg
    return archs


def spread_architecture(archs: dict[str, FATConfig]) -> str:
    """The network trained with several seeds: the first published FAT in the study, else the first sampled."""
    return next((name for name in PUBLISHED if name in archs), next(iter(archs)))


@dataclass(frozen=True)
class Job:
    """One measurement: train `arch` at a fidelity with a seed, or score it with one proxy."""

    arch: str
    config: dict[str, Any]
    kind: str
    measure: str
    seed: int
    proxy: dict[str, Any] | None = None  # ProxySettings fields of a training job

    @property
    def key(self) -> tuple[str, str, int]:
        return self.arch, self.measure, self.seed

    @property
    def estimator(self) -> str:
        """The spec of the estimator that carries the job out (`fatnas.estimate.make_estimator`)."""
        if self.kind == WEIGHT_SHARING:
            return self.measure
        return "proxy" if self.kind == TRAIN else f"zero-cost:{self.measure}"


def plan_jobs(settings: StudySettings, archs: dict[str, FATConfig]) -> list[Job]:
    """Per architecture: proxies, low fidelities, the high one with each reference seed; then the seed spread."""
    jobs: dict[tuple[str, str, int], Job] = {}
    for name, cfg in archs.items():
        config = cfg.to_dict()
        for proxy in settings.proxies:
            jobs.setdefault((name, proxy, settings.seed), Job(name, config, kind_of(proxy), proxy, settings.seed))
        for scorer in settings.scorers:
            jobs.setdefault((name, scorer, settings.seed), Job(name, config, WEIGHT_SHARING, scorer, settings.seed))
        pairs = [(low, settings.seed) for low in settings.lows] + [(settings.high, s) for s in settings.reference_seeds]
        for fidelity, seed in pairs:
            job = _training(name, config, settings, fidelity, seed)
            jobs.setdefault(job.key, job)
    spread = spread_architecture(archs)
    for seed in range(settings.seed + 1, settings.seed + settings.spread_seeds):
        for fidelity in settings.fidelities:
            job = _training(spread, archs[spread].to_dict(), settings, fidelity, seed)
            jobs.setdefault(job.key, job)
    return list(jobs.values())


def _training(arch: str, config: dict[str, Any], settings: StudySettings, fidelity: ProxySettings, seed: int) -> Job:
    return Job(arch, config, TRAIN, settings.label(fidelity), seed, fidelity.replace(seed=seed).to_dict())


def run_job(job: Job, data: DataSplit, settings: StudySettings) -> list[dict[str, Any]]:
    """Carry out one job; returns its fidelity.csv rows, one per metric."""
    cfg = FATConfig.from_dict(job.config)
    start = time.perf_counter()
    proxy = ProxySettings(**job.proxy).replace(device=settings.device) if job.proxy else None
    estimator = make_estimator(job.estimator, proxy=proxy, data=data, res=settings.lows[0].res,
                               batch_size=settings.proxy_batch, seed=job.seed, cost_res=settings.space.resolution,
                               device=settings.device)
    metrics = estimator.estimate(cfg).metrics
    values = {name: metrics[key] for key, name in STUDY_METRICS.items() if key in metrics}
    seconds = time.perf_counter() - start
    cost = analytic_cost(cfg, settings.space.resolution)
    return [dict(arch=job.arch, kind=job.kind, measure=job.measure, metric=metric, seed=job.seed, value=value,
                 seconds=seconds, params=cost.params, flops=cost.flops, config=json.dumps(job.config))
            for metric, value in values.items()]


# an estimate's metrics as fidelity.csv names them, in its order (a training's four, or a score)
STUDY_METRICS = {"accuracy": "accuracy", "val_loss": "loss", "sotl_e": "sotl_e", "curve_slope": "slope",
                 "score": SCORE}
_WORKER: dict[str, Any] = {}
_PR_SET_PDEATHSIG = 1


def end_with_parent() -> None:
    """On Linux, have the kernel end this worker when the study process dies, killed or not.

    Without it a killed study leaves its workers training their current jobs for minutes, rows
    that nobody writes, on cores a resumed study needs.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the worker ends after its current job instead
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # the study died while this worker started
        os._exit(1)


def _start_worker(settings: StudySettings) -> None:
    end_with_parent()
    configure_threads(settings.threads)
    _WORKER["data"] = settings_data(settings)
    _WORKER["settings"] = settings


def _run_in_worker(job: Job) -> list[dict[str, Any]]:
    return run_job(job, _WORKER["data"], _WORKER["settings"])


def execute(jobs: list[Job], settings: StudySettings, data: DataSplit) -> Iterator[list[dict[str, Any]]]:
    """The rows of each job as it finishes: in this process, or in `settings.workers` spawned processes."""
    if settings.workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield run_job(job, data, settings)
        return
    context = multiprocessing.get_context("spawn")  # no forked OpenMP state
    with concurrent.futures.ProcessPoolExecutor(settings.workers, mp_context=context, initializer=_start_worker,
                                                initargs=(settings,)) as pool:
        yield from results_as_they_end(pool, _run_in_worker, [(job,) for job in jobs])


def results_as_they_end(pool: concurrent.futures.Executor, function: Any,
                        calls: list[tuple[Any, ...]]) -> Iterator[Any]:
    """`function(*args)` for each args of `calls` on `pool`, each result as it ends; on exit (an error, a
    generator closed early) the calls not started are cancelled."""
    futures = [pool.submit(function, *args) for args in calls]
    try:
        for future in concurrent.futures.as_completed(futures):
            yield future.result()
    finally:
        for future in futures:
            future.cancel()


def read_study_table(run: Run, name: str) -> pd.DataFrame:
    """One of the study's CSV files; an empty frame if it is missing or empty (no seed spread, say)."""
    try:
        return run.read_table(name)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def read_rows(run: Run) -> pd.DataFrame:
    """fidelity.csv in long format; files from before the metric column get accuracy (trainings) or score."""
    return with_metric(read_study_table(run, "fidelity.csv"))


def finished_networks(table: pd.DataFrame, settings: StudySettings) -> pd.DataFrame:
    """The rows of the networks whose low fidelities and reference seeds have all finished."""
    needed = {(settings.label(low), settings.seed) for low in settings.lows}
    needed |= {(settings.high_label, seed) for seed in settings.reference_seeds}
    trained = table[table["kind"] == TRAIN]
    done = {arch for arch, rows in trained.groupby("arch") if needed <= set(zip(rows["measure"], rows["seed"]))}
    return table[table["arch"].isin(done)]


def with_metric(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return pd.DataFrame(columns=list(CSV_COLUMNS))
    if "metric" in table:
        return table
    metric = np.where(table["kind"] == TRAIN, "accuracy", SCORE)
    table = table.assign(metric=metric)
    return table[[c for c in CSV_COLUMNS if c in table] + [c for c in table if c not in CSV_COLUMNS]]



def kind_of(measure: str) -> str:
    if measure in BASELINES:
        return BASELINE
    return ZERO_COST if measure in PROXIES else TRAIN
