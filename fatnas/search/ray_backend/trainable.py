"""What runs inside a Tune trial: price, budget check, latency and proxy training of one config.

A trial reports Tune results (both metrics, the trial's attrs as JSON text); `outcome` and
`result_attrs` read them back on the driver side. The driver's DataSplit reaches each worker
process through Ray's object store once (`SharedData`) and is kept for the trials it runs.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import ray
import torch
from ray import tune

from ...estimate.data import DataSplit
from ...model.config import FATConfig
from ...model.space import SearchSpace
from ..evaluate import ESTIMATES, SearchSettings, price, time_candidate, train_candidate
from ..storage import worker_name

TIME_ATTR = "checkpoint"  # 1-based index of the validation checkpoint a result reports

_WORKER_DATA: dict[str, DataSplit] = {}


@dataclass(frozen=True)
class SharedData:
    """The driver's DataSplit in Ray's object store; each worker process fetches it once."""

    ref: Any  # ray.ObjectRef of the DataSplit

    def get(self) -> DataSplit:
        key = self.ref.hex()
        if key not in _WORKER_DATA:
            _WORKER_DATA.clear()
            _WORKER_DATA[key] = ray.get(self.ref)
        return _WORKER_DATA[key]


def config_of(space: SearchSpace, params: dict[str, Any]) -> FATConfig:
    """The FATConfig of a Tune config: the space's own sampling, fed the sampled values by name."""
    return space.sample(lambda name, _choices: params[name])


def run_trial(params: dict[str, Any], *, data: SharedData, settings: SearchSettings) -> None:
    """Tune trainable: price, budget check, latency, proxy training; reports via `tune.report`.

    Trains and times with `settings.threads` torch threads (the trial's CPUs). Intermediate
    results (checkpoint 1 .. eval_every-1) feed the MedianScheduler; the final result carries `final=True`.
    A config over budget reports one final result flagged `infeasible` and never trains.
    """
    torch.set_num_threads(settings.threads)
    ev = price(config_of(settings.sampled_space, params), settings)
    if not ev.infeasible:
        time_candidate(ev, settings)  # a latency budget is checked here
    if ev.infeasible:
        tune.report(_result(ev.attrs(), accuracy=None, final=True))
        return
    split = data.get()
    images = settings.proxy.checkpoint_images(len(split.train_x))
    last = len(images) - 1  # never stopped at its final checkpoint, as in the Optuna backend
    curve: list[list[float]] = []
    start = time.perf_counter()

    def report(checkpoint: int, accuracy: float) -> bool:
        curve.append([images[min(checkpoint, len(images) - 1)], accuracy])
        if checkpoint < last:
            attrs = dict(ev.attrs(), curve=curve, train_seconds=time.perf_counter() - start,
                         images_seen=curve[-1][0])
            tune.report(_result(attrs, accuracy=accuracy, final=False, checkpoint=checkpoint + 1))
        return False  # stopping is the MedianScheduler's decision, taken in the driver

    train_candidate(ev, split, settings, report)
    tune.report(_result(ev.attrs(), accuracy=ev.accuracy, final=True, checkpoint=len(ev.curve)))


def _result(attrs: dict[str, Any], *, accuracy: float | None, final: bool,
            checkpoint: int | None = None) -> dict[str, Any]:
    """A Tune result: both metrics (always present, None when unknown) and the trial's attrs.

    The config and curve travel as JSON text (Tune reserves `config` and flattens dicts).
    """
    out = dict(accuracy=accuracy, latency_ms=attrs["latency_ms"], final=final, infeasible=attrs["infeasible"],
               arch=json.dumps(attrs["config"]), curve=json.dumps(attrs["curve"]), params=attrs["params"],
               flops=attrs["flops"], flops_conv=attrs["flops_conv"], train_seconds=attrs["train_seconds"],
               images_seen=attrs["images_seen"], worker=worker_name(), **{name: attrs.get(name) for name in ESTIMATES})
    if checkpoint is not None:  # the MedianScheduler reads it; infeasible results have none and are never compared
        out[TIME_ATTR] = checkpoint
    return out


def outcome(result: dict[str, Any] | None, error: bool) -> str:
    """trials.csv state of a finished trial from its last result."""
    if error or not result or "final" not in result:
        return "FAIL"
    if result.get("infeasible"):
        return "INFEASIBLE"
    return "COMPLETE" if result["final"] else "PRUNED"  # not final: the MedianScheduler stopped it


def result_attrs(result: dict[str, Any]) -> dict[str, Any]:
    """The Evaluation.attrs() view of a Tune result."""
    return dict(config=json.loads(result["arch"]), params=result["params"], flops=result["flops"],
                flops_conv=result["flops_conv"], latency_ms=result["latency_ms"],
                infeasible=result.get("infeasible") or "", curve=json.loads(result["curve"]),
                train_seconds=result["train_seconds"], images_seen=result["images_seen"], worker=result.get("worker"),
                **{name: result.get(name) for name in ESTIMATES})


__all__ = ["TIME_ATTR", "SharedData", "config_of", "outcome", "result_attrs", "run_trial"]
