"""Where a confirm stage's trainings run: in this process, in `workers` spawned processes (as `search --workers`
runs trials), or as Ray tasks (as `search --backend ray` does). Each yields a training's row as it ends.
"""
from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from ...estimate.base import make_estimator
from ...estimate.data import DataSplit, settings_data
from ...estimate.proxy import ProxySettings, configure_threads
from ...model.config import FATConfig
from ..fidelity.jobs import end_with_parent, results_as_they_end

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Training:
    """One confirm training: a network's config, trained with the recipe and one seed."""

    network: str
    trial: int
    config: str  # the config as JSON
    latency_ms: float
    seed: int
    recipe: dict[str, Any]  # ProxySettings fields, the seed left to `seed`


@dataclass(frozen=True)
class Task:
    """What a training needs besides itself: the data set to load (where it runs) and torch threads."""

    dataset: str
    data_dir: str | None
    split_seed: int
    classes: tuple[int, ...]
    threads: int

    @property
    def seed(self) -> int:  # settings_data's name for the data split's seed
        return self.split_seed


def train(training: Training, data: DataSplit, cost_res: int) -> dict[str, Any]:
    """Train one network with the recipe and seed; its confirm_rows.csv row."""
    start = time.perf_counter()
    proxy = ProxySettings(**dict(training.recipe, seed=training.seed))
    estimate = make_estimator("proxy", proxy=proxy, data=data, seed=training.seed, res=proxy.res, cost_res=cost_res,
                              device=proxy.device).estimate(FATConfig.from_dict(json.loads(training.config)))
    return dict(network=training.network, trial=training.trial, seed=training.seed, accuracy=estimate.score,
                val_loss=estimate.metrics.get("val_loss"), latency_ms=training.latency_ms,
                seconds=time.perf_counter() - start, provenance=estimate.provenance)


_WORKER: dict[str, Any] = {}


def _start_worker(task: Task) -> None:
    end_with_parent()  # a killed stage leaves no worker training on
    configure_threads(task.threads)
    _WORKER["data"] = settings_data(task)


def _train_in_worker(training: Training, cost_res: int) -> dict[str, Any]:
    return train(training, _WORKER["data"], cost_res)


def run_local(trainings: Sequence[Training], task: Task, data: DataSplit, cost_res: int,
              workers: int) -> Iterator[dict[str, Any]]:
    """Each training's row as it ends: here (one worker) or in `workers` spawned processes."""
    if workers == 1 or len(trainings) <= 1:
        for training in trainings:
            yield train(training, data, cost_res)
        return
    context = multiprocessing.get_context("spawn")  # no forked OpenMP state
    with concurrent.futures.ProcessPoolExecutor(min(workers, len(trainings)), mp_context=context,
                                                initializer=_start_worker, initargs=(task,)) as pool:
        yield from results_as_they_end(pool, _train_in_worker, [(t, cost_res) for t in trainings])


def run_ray(trainings: Sequence[Training], task: Task, cost_res: int, address: str | None,
            workers: int | None) -> Iterator[dict[str, Any]]:
    """Each training's row as it ends, as Ray tasks of `task.threads` CPUs (at most `workers` at once; None: as many
    as the cluster holds), on a local runtime or the cluster at `address`."""
    import ray

    from ...search.ray_backend.driver import fatnas_runtime_env
    from ...search.ray_backend.options import keep_ray_on_loopback, local_cpus

    keep_ray_on_loopback(address)
    started = not ray.is_initialized()
    if started:
        ray.init(**({"address": address, "runtime_env": fatnas_runtime_env()} if address else
                    {"num_cpus": local_cpus(), "include_dashboard": False}), log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=task.threads)(_train_on_ray)
        yield from _ray_results(ray, remote, list(trainings), task, cost_res, workers or len(trainings))
    finally:
        if started:
            ray.shutdown()


def _train_on_ray(training: Training, task: Task, cost_res: int) -> dict[str, Any]:
    configure_threads(task.threads)
    if _WORKER.get("task") != task:
        _WORKER.update(task=task, data=settings_data(task))
    return train(training, _WORKER["data"], cost_res)


def _ray_results(ray: Any, remote: Any, waiting: list[Training], task: Task, cost_res: int,
                 limit: int) -> Iterator[dict[str, Any]]:
    """Keep at most `limit` trainings in flight; yield each row as its task ends."""
    running: list[Any] = []
    while waiting or running:
        while waiting and len(running) < limit:
            running.append(remote.remote(waiting.pop(0), task, cost_res))
        done, running = ray.wait(running, num_returns=1)
        yield ray.get(done[0])


__all__ = ["EXECUTORS", "Task", "Training", "run_local", "run_ray", "train"]
